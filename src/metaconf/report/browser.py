"""Headless Chromium for the report: a screenshot of its first screen, and the flags the browser test uses.

Chromium is the Debian package `chromium` (`apt-get install -y chromium`); nothing here is needed to write a
report, only to look at one.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from metaconf.errors import MetaconfError
from metaconf.io import atomic_path

# No sandbox (containers), no GPU, and none of the browser's own background traffic, so that every request a
# page makes is one the page asked for.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--hide-scrollbars",
    "--mute-audio",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter,SafeBrowsing,"
    "PreconnectToSearch,NetworkPrediction,AutofillServerCommunication",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--no-pings",
    "--metrics-recording-only",
    "--dns-prefetch-disable",
)


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise MetaconfError("chromium not found; install it with `apt-get install -y chromium`")


def chromium_command(user_data_dir: str | Path, *extra: str) -> list[str]:
    """The full command line: a fresh profile folder, the quiet flags, then `extra` (URL last)."""
    return [find_chromium(), *FLAGS, f"--user-data-dir={user_data_dir}", *extra]


def screenshot(html: str | Path, png: str | Path, width: int = 1400, height: int = 1000) -> Path:
    """Save a PNG of the first `width` x `height` pixels of a local HTML file, as a reader first sees it."""
    html, png = Path(html).resolve(), Path(png).resolve()
    if not html.is_file():
        raise MetaconfError(f"{html}: no such file")
    with atomic_path(png) as tmp, tempfile.TemporaryDirectory(prefix="metaconf-chromium-") as profile:
        done = subprocess.run(
            chromium_command(
                profile,
                f"--window-size={width},{height}",
                f"--screenshot={tmp}",
                "--virtual-time-budget=5000",
                html.as_uri(),
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not tmp.stat().st_size:
            raise MetaconfError(f"chromium could not take the screenshot: {done.stderr.strip().splitlines()[-1:]}")
    return png
