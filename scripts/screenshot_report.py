#!/usr/bin/env python
"""Rebuild a run's report and save a PNG of its first screen (headless Chromium).

    python scripts/screenshot_report.py RUN [--out docs/report-first-screen.png] [--width 1400] [--height 1000]

RUN is a run folder (with metrics.json) or a copy of one such as docs/demo-report/; the report is rebuilt first
(`metaconf report RUN`) so the picture shows the current layout. Needs `apt-get install -y chromium`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder (contains metrics.json)")
    parser.add_argument("--out", type=Path, default=Path("docs/report-first-screen.png"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--no-rebuild", action="store_true", help="use the run's report.html as it is")
    args = parser.parse_args(argv)

    from metaconf.errors import MetaconfError
    from metaconf.report import write_report
    from metaconf.report.browser import screenshot

    try:
        html = args.run / "report.html" if args.no_rebuild else write_report(args.run)[1]
        print(f"wrote {screenshot(html, args.out, args.width, args.height)}")
    except MetaconfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
