"""The study report: report.md, a self-contained report.html and plots, regenerated from a run folder."""

from metaconf.report.render import write_report

__all__ = ["write_report"]
