"""The accelerate launch configurations shipped with metaconf, by name (`launch_configs/NAME.yaml`).

    python -m metaconf.training.launch            # lists them, one `name  path` a line
    python -m metaconf.training.launch fsdp       # prints the path, for `accelerate launch --config_file "$(...)"`

They live inside the package so that an installed metaconf (not only a clone) has them; docs/training.md says
which to use where.
"""

from __future__ import annotations

import sys
from pathlib import Path

from metaconf.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "launch_configs"


def launch_configs() -> dict[str, Path]:
    """Every shipped accelerate config: name -> path."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


def launch_config(name: str) -> Path:
    """The path of the shipped accelerate config `name` (e.g. 'fsdp', 'deepspeed_zero2', 'ddp_cpu')."""
    configs = launch_configs()
    if name not in configs:
        raise ConfigError(f"no accelerate config named '{name}'; shipped: {', '.join(configs)}")
    return configs[name]


def main(argv: list[str] | None = None) -> int:
    """Print one config's path, or list them all."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if args:
            print(launch_config(args[0]))
        else:
            print("\n".join(f"{name}\t{path}" for name, path in launch_configs().items()))
    except ConfigError as err:
        print(f"metaconf: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
