"""Open a local HTML page in headless Chromium and report what happened, for the report's browser test.

    with PageCheck(folder) as check:            # serves `folder` on 127.0.0.1 and acts as the browser's proxy
        result = check.load("report.html")       # {"title", "images": [[complete, width]], "pwned", "scripts"}
        check.requests                           # every URL the browser asked for, ours or not

The page is loaded inside an iframe of a small harness page served from the same origin, whose script reads the
page's title and images after it loads (the report itself has no script). The browser sends every request,
loopback included, through the local server, which answers only its own files and records everything, so an
external URL or a hostile `<img src=x>` shows up in `requests`; `page_requests()` leaves out Chromium's own
account-service calls (*.google.com), which no flag of this Chromium turns off. Hostile test text reports itself by
pushing to `top.PWNED`, which the harness returns as "pwned".
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from metaconf.report.browser import chromium_command

HARNESS = """<!DOCTYPE html><html><head><title>harness</title></head><body>
<script>window.PWNED = [];</script>
<iframe id="page" src="{page}" style="width:1400px;height:1000px"></iframe>
<script>
document.getElementById("page").addEventListener("load", function () {{
  setTimeout(function () {{
    var d = document.getElementById("page").contentDocument;
    var images = Array.prototype.map.call(d.images, function (i) {{ return [i.complete, i.naturalWidth]; }});
    document.getElementById("out").textContent = JSON.stringify(
      {{title: d.title, images: images, pwned: window.PWNED, scripts: d.scripts.length}});
  }}, 300);
}});
</script><pre id="out">pending</pre></body></html>
"""


class PageCheck:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.requests: list[str] = []
        check = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                check.requests.append(self.path)
                local = self.folder_file(url.path) if url.netloc in ("", check.host) else None
                if local is None:
                    self.send_error(502 if url.netloc not in ("", check.host) else 404)
                    return
                body = local.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_HEAD = do_GET  # noqa: N815

            def do_CONNECT(self) -> None:  # noqa: N802  (https through the proxy)
                check.requests.append(f"CONNECT {self.path}")
                self.send_error(502)

            def folder_file(self, path: str) -> Path | None:
                name = path.lstrip("/")
                target = check.folder / name
                return target if re.fullmatch(r"[\w.-]+\.html", name) and target.is_file() else None

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> PageCheck:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def page_requests(self) -> list[str]:
        """Requests other than the browser's own service calls (to *.google.com, made on a blank page too)."""
        own = re.compile(r"^(CONNECT |https?://)[\w.-]*\.google\.com(:\d+)?(/|$)")
        return [r for r in self.requests if not own.match(r)]

    def load(self, page: str) -> dict:
        """Load `page` (a file in the folder) in the harness; returns what the harness read from it."""
        harness = f"harness-{page}"
        (self.folder / harness).write_text(HARNESS.format(page=page), encoding="utf-8")
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            done = subprocess.run(
                chromium_command(
                    profile,
                    f"--proxy-server=http://{self.host}",
                    "--proxy-bypass-list=<-loopback>",
                    "--virtual-time-budget=8000",
                    "--dump-dom",
                    f"http://{self.host}/{harness}",
                ),
                capture_output=True,
                text=True,
                check=False,
            )
        found = re.search(r'<pre id="out">(.*?)</pre>', done.stdout, re.S)
        assert found and found.group(1) != "pending", f"harness did not finish: {done.stderr[-2000:]}"

        return json.loads(html.unescape(found.group(1)))
