#!/usr/bin/env python3
"""PACS bench: DICOM through the appliance's HAProxy against DICOM straight to the real server.

    sudo .venv/bin/python -m bench.pacs.run [--runs 5] [--size-mb 200] [--associations 500]

Builds the netns lab of the test suite (client, appliance, two real servers; tests/netns/netlab.py)
with a real lbctl-applied configuration and HAProxy, then measures:

1. throughput: dcmtk storescu sends one DICOM object of --size-mb to dcmtk storescp (receiving,
   not writing: --ignore, so the disk does not hide the proxy's cost), alternately
   - direct:   client -> real server, routed by the appliance namespace's kernel, no HAProxy;
   - through:  client -> DICOM VIP -> HAProxy -> the same real server (one real server, SNAT).
   Medians of --runs pairs after one warm-up each; the goal is through/direct >= 0.9. The
   appliance's firewall is out of the way for both (its table deleted, forwarding on).
2. firewall cost: the same C-STORE through the VIP with the appliance's nftables ruleset loaded
   (lbctl's, in the appliance namespace, with the kernel's nftables) against none, in
   --firewall-runs back-to-back pairs (the order swapped every pair, one second after each
   toggle). The figure is the median of the pairs' ratios; the goal is on/off >= 0.97. Beside
   it, the CPU time the machine spent busy per transfer (/proc/stat), on against off: what the
   firewall costs in work, which steal time on a shared host does not blur.
3. firewall apply time: `lbctl firewall apply` (render, `nft -c`, `nft -f`) for the whole
   preset, nine services, medians of --apply-runs.
4. concurrency: --associations DICOM associations opened through one VIP within about a second
   (tests/netns/peers/echo_hold.py, a one-thread DICOM upper-layer client, from 20 client
   addresses, so both real servers get some), all held open together (HAProxy's own session
   count is read while they are), then each does a C-ECHO and releases. The real servers are
   dcmtk storescp with its idle-socket timeout off. The goal is 500 with none failing. Repeated
   --concurrency-runs times. (pynetdicom, with two polling threads per association, could not
   hold 500 from one 2-core client: the client, not HAProxy, was the limit.)

Writes bench/pacs/results.json and bench/pacs/results.md (with the machine it ran on).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import describe, publish
from lbctl.config import haproxy as runtime
from tests.helpers import make_dicom_file
from tests.netns.appliance import HAPROXY, NFT, Appliance
from tests.netns.netlab import (
    CLIENT_ADDRESSES,
    SERVER_ADDRESSES,
    SNAT,
    VIP_DICOM,
    Lab,
    missing_prerequisites,
    wait_until,
)
from tests.netns.sites import full_site

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

PEERS = ROOT / "tests" / "netns" / "peers"


def site(servers: list[str]) -> dict:
    return {
        "preset": "pacs",
        "snat_address": SNAT,
        "services": {
            "DICOM": {
                "vip": VIP_DICOM,
                "check_interval_seconds": 2,
                "check_timeout_seconds": 1,
                "servers": [{"label": f"Server{n + 1}", "address": SERVER_ADDRESSES[s]} for n, s in enumerate(servers)],
            }
        },
    }


def storescu_seconds(lab: Lab, host: str, file: Path) -> float:
    started = time.monotonic()
    result = lab.exec("cl", ["/usr/bin/storescu", host, "104", str(file)], check=False, timeout=600)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"storescu to {host} failed: {result.stderr.strip()}")
    return elapsed


def cpu_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (user, nice, system, irq, softirq; not idle,
    iowait or steal), from /proc/stat (proc(5)). Its growth during a transfer is the transfer's
    cost, which a shared host's steal time does not blur the way it blurs wall time."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:8]]
    user, nice, system, _idle, _iowait, irq, softirq = fields
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def firewall_off(lab: Lab) -> None:
    """No appliance ruleset in the appliance namespace, and it routes (for the direct path)."""
    lab.exec("lb", [NFT, "delete", "table", "inet", "lbappliance"], check=False)
    lab.exec("lb", ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])


def firewall_on(appliance: Appliance) -> None:
    appliance.lbctl("firewall", "apply")
    listed = appliance.lab.exec("lb", [NFT, "list", "table", "inet", "lbappliance"]).stdout
    if "policy drop" not in listed:
        raise RuntimeError("the appliance's ruleset is not loaded")


def throughput(lab: Lab, appliance: Appliance, file: Path, runs: int) -> dict:
    size = file.stat().st_size
    appliance.apply(site(["s1"]))
    appliance.lbctl("status")  # healthy, or this raises
    firewall_off(lab)
    direct_host = SERVER_ADDRESSES["s1"]
    storescu_seconds(lab, direct_host, file)  # warm-up: page cache, ARP, first fork
    storescu_seconds(lab, VIP_DICOM, file)
    direct, through = [], []
    for _ in range(runs):
        direct.append(storescu_seconds(lab, direct_host, file))
        through.append(storescu_seconds(lab, VIP_DICOM, file))
    mb = size / 1e6
    direct_rate = mb / statistics.median(direct)
    through_rate = mb / statistics.median(through)
    return {
        "object_bytes": size,
        "runs": runs,
        "direct_seconds": direct,
        "through_seconds": through,
        "direct_median_MBps": round(direct_rate, 1),
        "through_median_MBps": round(through_rate, 1),
        "ratio_through_over_direct": round(through_rate / direct_rate, 3),
    }


def firewall_cost(lab: Lab, appliance: Appliance, file: Path, runs: int) -> dict:
    """C-STORE through the DICOM VIP with the appliance's ruleset loaded and without, alternating."""
    appliance.apply(site(["s1"]))
    on: list[float] = []
    off: list[float] = []
    cpu_on: list[float] = []
    cpu_off: list[float] = []

    def measure(firewall: bool) -> tuple[float, float]:
        if firewall:
            firewall_on(appliance)
        else:
            firewall_off(lab)
        time.sleep(1)  # loading the ruleset runs lbctl (Python): let that CPU burst pass first
        busy = cpu_busy_seconds()
        seconds = storescu_seconds(lab, VIP_DICOM, file)
        return seconds, cpu_busy_seconds() - busy

    for n in range(runs + 1):  # the first pair warms up
        # Alternate the order within each pair, so that a drift of the shared host's speed
        # weighs on both sides alike.
        order = (True, False) if n % 2 else (False, True)
        seconds = {firewall: measure(firewall) for firewall in order}
        if n:
            on.append(seconds[True][0])
            off.append(seconds[False][0])
            cpu_on.append(seconds[True][1])
            cpu_off.append(seconds[False][1])
    firewall_on(appliance)
    mb = file.stat().st_size / 1e6
    return {
        "runs": runs,
        "on_seconds": on,
        "off_seconds": off,
        "on_median_MBps": round(mb / statistics.median(on), 1),
        "off_median_MBps": round(mb / statistics.median(off), 1),
        # Each pair is measured back to back, so its ratio cancels the host's drift, which on
        # these shared machines moves single transfers by +-25 %: the median of the pairs'
        # ratios is the figure; the ratio of the medians is kept beside it.
        "ratio_on_over_off": round(statistics.median(b / a for a, b in zip(on, off, strict=True)), 3),
        "ratio_of_medians": round(statistics.median(off) / statistics.median(on), 3),
        "cpu_seconds_on": cpu_on,
        "cpu_seconds_off": cpu_off,
        # CPU per transfer, off over on: what the firewall costs in work, not in waiting.
        "cpu_ratio_off_over_on": round(statistics.median(cpu_off) / statistics.median(cpu_on), 3),
    }


def firewall_apply(appliance: Appliance, runs: int) -> dict:
    """`lbctl firewall apply` of the whole preset (nine services), wall time of the command."""
    appliance.apply(full_site())
    seconds = []
    for _ in range(runs):
        started = time.monotonic()
        firewall_on(appliance)
        seconds.append(time.monotonic() - started)
    rules = appliance.lab.exec("lb", [NFT, "-a", "list", "table", "inet", "lbappliance"]).stdout.count("# handle")
    return {
        "services": len(full_site()["services"]),
        "runs": runs,
        "seconds": seconds,
        "median_seconds": round(statistics.median(seconds), 3),
        "rules_and_sets": rules,
        "nft": appliance.lab.exec("lb", [NFT, "--version"]).stdout.strip(),
    }


def concurrency(lab: Lab, appliance: Appliance, workdir: Path, associations: int, runs: int) -> dict:
    appliance.apply(site(["s1", "s2"]))
    wait_until(lambda: appliance.server("DICOM", "Server2")["state"] == "UP", 15, "Server2 UP")
    sources = CLIENT_ADDRESSES[:20]
    per_source = -(-associations // len(sources))
    results = []
    for run in range(runs):
        status_file = workdir / f"held-{run}.json"
        status_file.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            str(PEERS / "echo_hold.py"),
            "--host",
            VIP_DICOM,
            "--port",
            "104",
            "--per-source",
            str(per_source),
            "--hold",
            "3",
            "--status-file",
            str(status_file),
        ]
        for source in sources:
            cmd += ["--source", source]
        proc = subprocess.Popen(["ip", "netns", "exec", lab.ns("cl"), *cmd], stdout=subprocess.PIPE, text=True)
        wait_until(status_file.exists, 180, "all associations opened")
        # While all are held: what HAProxy itself counts on the DICOM frontend and servers.
        rows = {r["svname"]: r for r in runtime.show_stat(appliance.admin_socket) if r["pxname"] == "DICOM"}
        out, _ = proc.communicate(timeout=300)
        result = json.loads(out)
        result["haproxy_frontend_sessions_while_held"] = int(rows["FRONTEND"]["scur"])
        result["haproxy_server_sessions_while_held"] = {
            k: int(v["scur"]) for k, v in rows.items() if k not in ("FRONTEND", "BACKEND")
        }
        results.append(result)
    return {
        "associations": per_source * len(sources),
        "client_addresses": len(sources),
        "runs": results,
        "all_runs_without_failure": all(r["established"] == r["requested"] == r["echo_ok"] for r in results),
        "median_seconds_until_all_open": round(statistics.median(r["seconds_until_all_open"] for r in results), 2),
    }


def pacs_machine() -> dict:
    import pynetdicom

    return {
        **describe(haproxy=[HAPROXY, "-v"], dcmtk=["/usr/bin/storescu", "--version"]),
        "pynetdicom": pynetdicom.__version__,
    }


def markdown(results: dict) -> str:
    m, t, c = results["machine"], results["throughput"], results["concurrency"]
    fc, fa = results["firewall_cost"], results["firewall_apply"]
    lines = [
        "# PACS bench: DICOM through the appliance's HAProxy",
        "",
        f"Run {results['date']} with `bench/pacs/run.py` in network namespaces (client, appliance, two real servers;",
        "veth links) on one machine:",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {m['cpu']}, {m['cores']} cores |",
        f"| RAM | {m['ram_gib']} GiB |",
        f"| kernel | {m['kernel']} |",
        f"| HAProxy | {m['haproxy']} |",
        f"| DICOM tools | {m['dcmtk'].strip()}, pynetdicom {m['pynetdicom']} |",
        "",
        f"## C-STORE of one {t['object_bytes'] / 1e6:.0f} MB object (dcmtk storescu -> storescp --ignore)",
        "",
        f"Medians of {t['runs']} alternating runs after a warm-up of each.",
        "",
        "| path | median time | median throughput |",
        "|---|---|---|",
        f"| direct (client -> real server, kernel routing only) | {statistics.median(t['direct_seconds']):.2f} s "
        f"| {t['direct_median_MBps']} MB/s |",
        f"| through the DICOM VIP (HAProxy, SNAT) | {statistics.median(t['through_seconds']):.2f} s "
        f"| {t['through_median_MBps']} MB/s |",
        f"| **ratio through / direct** | | **{t['ratio_through_over_direct']}** (goal >= 0.9) |",
        "",
        "## The firewall's cost",
        "",
        f"The same C-STORE through the DICOM VIP, the appliance's nftables ruleset loaded (on) or not (off), "
        f"in {fc['runs']} back-to-back pairs after a warm-up pair (the order swapped every pair, each measured one "
        "second after the toggle). The ratio is the median of the pairs' ratios, which cancels the host's drift "
        f"(single transfers vary by about 25 % here); the ratio of the medians was {fc['ratio_of_medians']}.",
        "",
        "| firewall | median time | median throughput |",
        "|---|---|---|",
        f"| on | {statistics.median(fc['on_seconds']):.3f} s | {fc['on_median_MBps']} MB/s |",
        f"| off | {statistics.median(fc['off_seconds']):.3f} s | {fc['off_median_MBps']} MB/s |",
        f"| **ratio on / off** | | **{fc['ratio_on_over_off']}** (goal >= 0.97) |",
        "",
        f"CPU time the machine spent busy per transfer (/proc/stat; steal excluded), medians: on "
        f"{statistics.median(fc['cpu_seconds_on']):.3f} s, off {statistics.median(fc['cpu_seconds_off']):.3f} s; "
        f"off / on **{fc['cpu_ratio_off_over_on']}**.",
        "",
        f"Loading the ruleset of the whole preset ({fa['services']} services, {fa['rules_and_sets']} rules and "
        f"sets; `lbctl firewall apply`: render, `nft -c`, `nft -f`, {fa['nft']}): median "
        f"**{fa['median_seconds']:.2f} s** of {fa['runs']} runs "
        f"(min {min(fa['seconds']):.2f} s, max {max(fa['seconds']):.2f} s). Most of it is lbctl's Python start-up.",
        "",
        f"## {c['associations']} concurrent C-ECHO associations through one VIP",
        "",
        f"{c['associations']} associations from {c['client_addresses']} client addresses opened within about a "
        "second (a one-thread DICOM client, `tests/netns/peers/echo_hold.py`), held together, "
        "then one C-ECHO each and a release.",
        "",
        "| run | established | C-ECHO ok | failed | HAProxy sessions while held | all open after |",
        "|---|---|---|---|---|---|",
    ]
    for n, r in enumerate(c["runs"], 1):
        lines.append(
            f"| {n} | {r['established']}/{r['requested']} | {r['echo_ok']} | {r['requested'] - r['echo_ok']} "
            f"| {r['haproxy_frontend_sessions_while_held']} "
            f"({', '.join(f'{k} {v}' for k, v in r['haproxy_server_sessions_while_held'].items())}) "
            f"| {r['seconds_until_all_open']:.2f} s |"
        )
    lines += [
        "",
        f"Median time until all were open: {c['median_seconds_until_all_open']} s. "
        f"Every run without a failure: **{'yes' if c['all_runs_without_failure'] else 'NO'}**.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--associations", type=int, default=500)
    parser.add_argument("--concurrency-runs", type=int, default=3)
    parser.add_argument("--firewall-runs", type=int, default=60)
    parser.add_argument("--apply-runs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    problems = missing_prerequisites()
    if problems:
        print("bench cannot run: " + "; ".join(problems), file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="lbt-bench-", dir="/tmp"))
    workdir.chmod(0o755)
    lab = Lab(workdir)
    appliance = None
    try:
        lab.build()
        for server in ("s1", "s2"):
            # -ts 0: dcmtk drops an association idle for 60 s by default (its socket timeout), and
            # the first of 500 held associations idles until the last one is open.
            lab.spawn(
                server, f"{server}-storescp", ["/usr/bin/storescp", "-dhl", "--fork", "--ignore", "-ts", "0", "104"]
            )
            lab.wait_port(server, "0.0.0.0", 104)
        appliance = Appliance(lab, firewall=True)
        appliance.apply(site(["s1"]))
        appliance.start()
        file = workdir / "big.dcm"
        make_dicom_file(file, args.size_mb * 1024 * 1024)
        results = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": pacs_machine(),
            "throughput": throughput(lab, appliance, file, args.runs),
            "firewall_cost": firewall_cost(lab, appliance, file, args.firewall_runs),
            "concurrency": concurrency(lab, appliance, workdir, args.associations, args.concurrency_runs),
            # Last: the whole preset, which later single-service sites would have to --remove.
            "firewall_apply": firewall_apply(appliance, args.apply_runs),
        }
    finally:
        if appliance is not None:
            appliance.close()
        lab.close()
        shutil.rmtree(workdir, ignore_errors=True)
    publish(args.out, "results", results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
