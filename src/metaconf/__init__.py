"""metaconf: teach language models to say how sure they are, and measure whether they can."""

__version__ = "0.2.0.dev0"


def __getattr__(name: str):  # `metaconf.ask(...)` without importing the engines at `import metaconf`
    if name in ("ask", "AskResult"):
        from metaconf.serving import ask as asking

        return getattr(asking, name)
    raise AttributeError(f"module 'metaconf' has no attribute {name!r}")
