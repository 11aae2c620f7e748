"""metaconf: teach language models to say how sure they are, and measure whether they can."""

__version__ = "0.1.0"
