"""Open a local HTML page in headless Chromium and report what happened, for the report's browser test.

    with PageCheck(folder) as check:            # serves `folder` on 127.0.0.1
        load = check.load("report.html")         # a fresh profile and a freshly started Chromium per load
        load.result                              # {"title", "images": [[complete, width]], "pwned", "scripts"}
        load.page_urls                           # every URL fetched for the page, whichever host it names
        load.connections                         # the address of every TCP connection the browser opened

Chromium starts with `chromium_command`: no proxy, quiet flags, and a resolver rule under which every host but
127.0.0.1 resolves to nowhere, so the browser cannot reach outside, whoever asks. What it did is read from its own
network log (`--log-net-log`), which names every request it started, including those that died at the resolver,
so a page that asks another host for anything shows up in `page_urls` although the request went nowhere.

The page is loaded inside an iframe of a small harness page served from the same origin, whose script reads the
page's title and images after it loads (the report itself has no script). Hostile test text reports itself by
pushing to `top.PWNED`, which the harness returns as "pwned".
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from metaconf.report.browser import chromium_command

LOOPBACK = "127.0.0.1"
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


@dataclass
class PageLoad:
    """One load of a page: what the harness read from it, and what the browser's network log says it did."""

    result: dict
    page_urls: list[str] = field(default_factory=list)  # requested by or for the page (its origin or site)
    browser_urls: list[str] = field(default_factory=list)  # the browser's own requests (service calls)
    connections: list[str] = field(default_factory=list)  # remote address of every TCP connection opened
    resolved: list[str] = field(default_factory=list)  # every host that resolved, as the resolver saw it
    refused: list[str] = field(default_factory=list)  # every host the resolver failed (`~notfound` under the rule)


def read_netlog(path: Path, origin: str) -> PageLoad:
    """Sort the URL requests of a Chromium net log into the page's and the browser's own, and list every TCP
    connection and every name resolution, done or refused; `origin` is the test server's http://host:port."""
    log = json.loads(path.read_text(encoding="utf-8"))
    kinds = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    load, asked = PageLoad(result={}), {}
    site = f"{origin.rsplit(':', 1)[0]} "  # a network isolation key starts with its top frame's site
    for event in log["events"]:
        kind, params = kinds[event["type"]], event.get("params", {})
        if kind == "URL_REQUEST_START_JOB" and "url" in params:
            for_page = params.get("initiator") == origin or params.get("network_isolation_key", "").startswith(site)
            (load.page_urls if for_page else load.browser_urls).append(params["url"])
        elif kind == "TCP_CONNECT" and "remote_address" in params:
            load.connections.append(params["remote_address"])
        elif kind == "HOST_RESOLVER_MANAGER_REQUEST":
            if "host" in params:
                asked[event["source"]["id"]] = params["host"]
            elif event["source"]["id"] in asked:
                host = asked.pop(event["source"]["id"])
                (load.refused if "net_error" in params else load.resolved).append(host)
    return load


class PageCheck:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.requests: list[str] = []  # every request that reached the test server
        check = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                check.requests.append(self.path)
                name = self.path.lstrip("/")
                target = check.folder / name
                if not (re.fullmatch(r"[\w.-]+\.html", name) and target.is_file()):
                    self.send_error(404)
                    return
                body = target.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.host = f"{LOOPBACK}:{self.server.server_address[1]}"

    def __enter__(self) -> PageCheck:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def load(self, page: str) -> PageLoad:
        """Load `page` (a file in the folder) in the harness, in a new Chromium with a brand-new profile."""
        harness = f"harness-{page}"
        (self.folder / harness).write_text(HARNESS.format(page=page), encoding="utf-8")
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            netlog = Path(profile).parent / f"{Path(profile).name}-netlog.json"
            done = subprocess.run(
                chromium_command(
                    profile,
                    f"--log-net-log={netlog}",
                    "--virtual-time-budget=8000",
                    "--dump-dom",
                    f"http://{self.host}/{harness}",
                    loopback_host=LOOPBACK,
                ),
                capture_output=True,
                text=True,
                check=False,
            )
        found = re.search(r'<pre id="out">(.*?)</pre>', done.stdout, re.S)
        assert found and found.group(1) != "pending", f"harness did not finish: {done.stderr[-2000:]}"
        try:
            load = read_netlog(netlog, f"http://{self.host}")
        finally:
            netlog.unlink(missing_ok=True)
        load.result = json.loads(html.unescape(found.group(1)))
        return load
