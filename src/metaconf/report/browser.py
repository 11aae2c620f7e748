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

# No sandbox (containers), no GPU, and none of the browser's own background traffic: no updater, sync, sign-in,
# first-run or default-browser checks, field trials, metrics, crash reports or network-time queries. Chromium
# 156 still asks, on a brand-new profile, for one on-demand component (the optimization guide's model manifest,
# which ignores --disable-component-update) and for the sign-in account list; `chromium_command`'s resolver rule
# is what keeps those, and anything a later Chromium adds, from reaching outside.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-field-trial-config",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--hide-scrollbars",
    "--mute-audio",
    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,OptimizationHintsFetching,"
    "OptimizationGuideModelDownloading,OptimizationGuideOnDeviceModel,Translate,MediaRouter,SafeBrowsing,"
    "PreconnectToSearch,NetworkPrediction,AutofillServerCommunication,SpellCheck",
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


def resolver_rule(loopback_host: str | None = None) -> str:
    """Every host name (IP literals too) resolves to nowhere, except `loopback_host` (a test's own server)."""
    rule = f"MAP * ~NOTFOUND, EXCLUDE {loopback_host}" if loopback_host else "MAP * ~NOTFOUND"
    return f"--host-resolver-rules={rule}"


def chromium_command(user_data_dir: str | Path, *extra: str, loopback_host: str | None = None) -> list[str]:
    """The full command line: the quiet flags, a resolver that reaches no host but `loopback_host`, the profile
    folder (give a fresh one), then `extra` (URL last)."""
    return [find_chromium(), *FLAGS, resolver_rule(loopback_host), f"--user-data-dir={user_data_dir}", *extra]


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
