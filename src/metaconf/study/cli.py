"""`metaconf run STUDY.yaml` and `metaconf demo`."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path

DEMO_CONFIG = "demo.yaml"


def _add_common(p: argparse.ArgumentParser) -> None:
    from metaconf.study.runner import STAGES

    p.add_argument("--out", type=Path, help="run folder (default: runs/<study name>); rerunning resumes it")
    p.add_argument("--stages", nargs="+", choices=STAGES, metavar="STAGE",
                   help=f"run only these stages (plus data): {', '.join(STAGES)}")
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage lines")


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run", help="run a whole study from a YAML config",
        description="Run a study: sample answers, build calibrated targets, fine-tune each condition, evaluate "
        "every condition x task x dataset, write metrics.json, report.md and report.html. Rerunning the "
        "same command resumes: nothing stored is recomputed.",
    )
    run.add_argument("config", type=Path, help="the study config (see examples/paper.yaml)")
    _add_common(run)
    run.set_defaults(func=_run)

    demo = subparsers.add_parser(
        "demo", help="the whole study on the embedded model and bundled data (CPU, offline)",
        description="Run the paper's design on SmolLM2-135M-Instruct (shipped with metaconf) with the bundled "
        "benchmark samples: offline, on a laptop CPU. Same as `metaconf run` with the demo config "
        "(print it with --show-config).",
    )
    demo.add_argument("--show-config", action="store_true", help="print the demo's config and exit")
    _add_common(demo)
    demo.set_defaults(func=_demo)


def _execute(config, out: Path | None, args: argparse.Namespace, source: str) -> int:
    from metaconf.study.runner import STAGES, Study

    from metaconf.errors import ConfigError

    if out is None and (Path(config.name).name != config.name or config.name in ("", ".", "..")):
        raise ConfigError(f"{source}: field 'name': {config.name!r} is not a folder name, so the default run folder "
                          f"runs/<name> cannot be used; pass --out")
    run_dir = out or Path("runs") / config.name
    Study(config, run_dir, quiet=args.quiet, source=source).run(tuple(args.stages or STAGES))
    print(f"report: {run_dir / 'report.html'} (also {run_dir / 'report.md'}, {run_dir / 'metrics.json'})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from metaconf.study.config import load_config

    return _execute(load_config(args.config), args.out, args, str(args.config))


def demo_config_text() -> str:
    return resources.files("metaconf.study").joinpath(DEMO_CONFIG).read_text(encoding="utf-8")


def _demo(args: argparse.Namespace) -> int:
    from metaconf.study.config import parse_config, read_config_text

    text = demo_config_text()
    if args.show_config:
        print(text, end="")
        return 0
    return _execute(parse_config(read_config_text(text, "demo config"), source="demo config"), args.out, args,
                    "demo config")
