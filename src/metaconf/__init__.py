"""metaconf: teach language models to say how sure they are, and measure whether they can."""

import os

__version__ = "0.2.0.dev0"

# oneDNN (torch's CPU kernels) keeps up to 1024 compiled primitives, one per operator shape, and training on
# sequences of every length fills it: 0.7 GB of the demo's largest training (BENCHMARKS.md, "Memory"). Eight are as
# fast here; set before torch first runs a kernel, and only where the user has not chosen.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "8")


def __getattr__(name: str):  # `metaconf.ask(...)` without importing the engines at `import metaconf`
    if name in ("ask", "AskResult"):
        from metaconf.serving import ask as asking

        return getattr(asking, name)
    raise AttributeError(f"module 'metaconf' has no attribute {name!r}")
