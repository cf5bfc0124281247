#!/usr/bin/env python3
"""Web UI bench: the System Overview's server time and page weight.

    sudo .venv/bin/python -m bench.webui.run [--requests 200]

Builds the netns lab of the test suite (tests/netns/netlab.py) with lbctl and HAProxy in the
appliance namespace, and measures the overview for two sites:

* **pacs**: the nine PACS services with two real servers each (the suite's full site, every real
  server a real peer and UP);
* **200 servers**: the nine services with 200 real servers between them (22 or 23 each), on
  addresses where nothing answers, so that every one is DOWN with a check failure to show.

For each, with a signed-in session:

1. **server time**: the overview handler in-process (Flask's test client: reading HAProxy's
   runtime API, the status model, the template), the full page and the live fragment the page
   fetches every 5 s; median and 95th percentile of --requests, after 10 warm-ups;
2. **over HTTPS**: the same page from gunicorn as lb-webui.service runs it (TLS, one keep-alive
   connection on loopback), median of --requests;
3. **page weight**: the HTML, and the HTML with the style sheet and the script (a first visit;
   the browser caches those for an hour).

Goal: under 50 ms and under 200 KB. Writes bench/webui/results.json and results.md.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import describe, one_line, publish
from lbctl.appliance import Paths
from lbctl.webui import auth, tls
from lbctl.webui.app import PREFIX, WebSettings, create_app
from tests.netns.appliance import HAPROXY, Appliance
from tests.netns.backends import start_backends
from tests.netns.netlab import SERVER_NET, Lab, missing_prerequisites, wait_until
from tests.netns.sites import full_site

OUT = Path(__file__).resolve().parent
PASSWORD = "bench-password"
GOAL_MS, GOAL_KB = 50, 200


def site_with(total: int) -> dict:
    """The full site with `total` real servers spread over its nine services, on addresses of the
    server network where no host answers (.100 and up)."""
    site = full_site()
    names = list(site["services"])
    for i, name in enumerate(names):
        count = total // len(names) + (1 if i < total % len(names) else 0)
        site["services"][name]["servers"] = [
            {"label": f"Server{n + 1}", "address": f"{SERVER_NET}.{100 + n}"} for n in range(count)
        ]
    return site


def timed(call: Any, runs: int) -> list[float]:
    for _ in range(10):
        call()
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1], 2),
        "runs": len(ordered),
    }


def measure(appliance: Appliance, work: Path, runs: int) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    hash_file = work / "hash"
    hash_file.write_text(
        subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True, check=True).stdout
    )
    paths = Paths(appliance.state_dir, appliance.admin_socket, appliance.master_socket, Path("/nonexistent"))
    settings = WebSettings(paths, auth.PasswordFile(hash_file), work / "upload", tls.TLSFiles(work / "tls"))
    app = create_app(settings)
    client = app.test_client()
    client.post(f"{PREFIX}/login", data={"user": "admin", "password": PASSWORD})
    page = client.get(f"{PREFIX}/")
    assert page.status_code == 200, page.status_code
    html = page.get_data()
    servers = len(re.findall(rb'<tr data-server="', html))
    css = client.get(f"{PREFIX}/static/lbadmin.css").get_data()
    js = client.get(f"{PREFIX}/static/lbadmin.js").get_data()
    fragment = client.get(f"{PREFIX}/?fragment=1").get_data()
    result: dict[str, Any] = {
        "servers_shown": servers,
        "page_in_process": summary(timed(lambda: client.get(f"{PREFIX}/"), runs)),
        "fragment_in_process": summary(timed(lambda: client.get(f"{PREFIX}/?fragment=1"), runs)),
        "html_bytes": len(html),
        "fragment_bytes": len(fragment),
        "first_visit_bytes": len(html) + len(css) + len(js),
    }
    result["page_over_https"] = over_https(appliance, hash_file, work, runs)
    return result


def over_https(appliance: Appliance, hash_file: Path, work: Path, runs: int) -> dict[str, float]:
    """The page from gunicorn with lbctl.webui.server's settings, over one TLS connection."""
    env = {
        **appliance.env(),
        "LB_DATA_DIR": str(work / "data"),
        "LB_WEBUI_BIND": "127.0.0.1:19443",
        "LB_WEBUI_PASSWORD_FILE": str(hash_file),
    }
    subprocess.run([sys.executable, "-m", "lbctl.webui.tls", "ensure"], env=env, check=True, capture_output=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "python:lbctl.webui.server", "lbctl.webui.app:create_app()"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        context = ssl._create_unverified_context()

        def connect() -> http.client.HTTPSConnection:
            return http.client.HTTPSConnection("127.0.0.1", 19443, context=context, timeout=30)

        def up() -> bool:
            try:
                c = connect()
                c.request("GET", f"{PREFIX}/login")
                return c.getresponse().status == 200
            except OSError:
                return False

        wait_until(up, 30, "gunicorn")
        conn = connect()
        conn.request(
            "POST",
            f"{PREFIX}/login",
            body=f"user=admin&password={PASSWORD}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        answer = conn.getresponse()
        answer.read()
        cookie = answer.getheader("Set-Cookie", "").split(";")[0]

        def get() -> None:
            conn.request("GET", f"{PREFIX}/", headers={"Cookie": cookie})
            response = conn.getresponse()
            response.read()
            assert response.status == 200, response.status

        return summary(timed(get, runs))
    finally:
        server.terminate()
        server.wait(10)


def all_checked(appliance: Appliance) -> bool:
    return all(r["last_check"]["status"] for s in appliance.status()["services"] for r in s["servers"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    problems = missing_prerequisites()
    if problems:
        print("bench: " + "; ".join(problems), file=sys.stderr)
        return 1
    machine = describe(haproxy=[HAPROXY, "-v"])
    work = Path(tempfile.mkdtemp(prefix="lbbench-webui-", dir="/tmp"))
    work.chmod(0o755)
    lab = Lab(work / "lab")
    results: dict[str, Any] = {"machine": machine, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
    try:
        lab.build()
        start_backends(lab, work / "servers")
        for name, site, expect in (("pacs", full_site(), 18), ("200 servers", site_with(200), 200)):
            print(f"==> {name}: applying, starting HAProxy, waiting for the first checks", flush=True)
            appliance = Appliance(lab)
            try:
                appliance.apply(site)
                appliance.start()
                wait_until(functools.partial(all_checked, appliance), 60, "every real server checked once")
                started = time.monotonic()
                figures = measure(appliance, work / name.replace(" ", "-"), args.requests)
                assert figures["servers_shown"] == expect, figures
                results[name] = figures
                print(f"    {figures} ({time.monotonic() - started:.1f} s)", flush=True)
            finally:
                appliance.close()
                lab.sync_addresses(Path("/nonexistent"))
    finally:
        lab.close()
        shutil.rmtree(work, ignore_errors=True)
    publish(OUT, "results", results, markdown(results))
    return 0


def markdown(r: dict[str, Any]) -> str:
    rows = []
    for name in ("pacs", "200 servers"):
        f = r[name]
        rows.append(
            f"| {name} | {f['servers_shown']} | {f['page_in_process']['median_ms']} ({f['page_in_process']['p95_ms']}) "
            f"| {f['fragment_in_process']['median_ms']} ({f['fragment_in_process']['p95_ms']}) "
            f"| {f['page_over_https']['median_ms']} ({f['page_over_https']['p95_ms']}) "
            f"| {f['html_bytes'] / 1000:.1f} | {f['first_visit_bytes'] / 1000:.1f} |"
        )
    runs = r["pacs"]["page_in_process"]["runs"]
    return f"""# Web UI bench: the System Overview

`sudo .venv/bin/python -m bench.webui.run` ({r["date"]}). Medians of {runs} requests after 10
warm-ups, 95th percentile in brackets, milliseconds. *In process*: the handler through Flask's test
client (HAProxy's runtime API, the status model, the template). *HTTPS*: the same page from gunicorn
as lb-webui.service runs it, over one keep-alive TLS connection on loopback. Weights in kB (1000
bytes), uncompressed; the first visit adds the style sheet and the script.

| site | real servers | page, in process | live fragment, in process | page over HTTPS | HTML kB | first visit kB |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Goal: under {GOAL_MS} ms and under {GOAL_KB} kB, both met by the medians.

Machine: {one_line(r["machine"])}
"""


if __name__ == "__main__":
    sys.exit(main())
