#!/usr/bin/env python3
"""HA bench: failover time, persistence kept across failovers, and false failovers, with two
appliance VMs paired as in tests/image/test_pair.py (the lab is tests/image/pair.py).

    sudo .venv/bin/python -m bench.ha.run [--failovers 10] [--clients 20] [--load-minutes 10]
                                          [--keepalive-ms 250] [--deadtime-ms 2500]

Needs the built KVM artifact (`make image`). Then:

1. failover series: --failovers times, the active node is powered off (QEMU killed: no goodbye
   from heartbeat) while a client connects to the VIP every 50 ms (0.2 s timeout). The failover
   time is the gap from the power-off to the first answer from the VIP. Then the node is booted
   again and comes back passive, and the next round powers off the other node.
2. persistence: before each power-off, --clients sticky clients (one source address each) store
   one DICOM object through the VIP; after the failover each stores again. The share that reached
   the same real server is reported (the stick table crossed over HAProxy's peers link).
3. false failovers: --load-minutes with every vCPU of both nodes busy (two shell busy loops per
   node); the floating IPs must stay where they are, and heartbeat's "Late heartbeat" warnings are
   counted.

The timing is the site's `ha` block. Under QEMU without KVM (this project's machines) the guests
are emulated, so the default 100/500 ms gives false failovers (docs/cluster.md, Timing); the
default bench timing is the one the tests use. Writes bench/ha/results.json and results.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.machine import describe, one_line, publish
from builder import provision, qemu
from builder.manifest import load as load_manifest
from builder.settings import path as settings_path
from tests.helpers import artifact
from tests.image.pair import NODE_ADDRESS, SITE, VIP, Pair, booted_pair

OUT = Path(__file__).resolve().parent
CLIENT_BASE = 100  # the sticky clients are 10.210.0.100 and up, on br0 in the lab's namespace


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def pair_up(pair: Pair) -> None:
    token = pair.sh("lb2", "lbctl cluster token").stdout.split("token for lb2: ")[1].split()[0]
    pair.sh("lb1", f"lbctl cluster pair --peer {NODE_ADDRESS['lb2']} --token {token}")
    wait_states(pair, {"lb1": "active", "lb2": "passive"})


def wait_states(pair: Pair, states: dict[str, str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while any(pair.status(n).get("state") != s for n, s in states.items()):
        if time.monotonic() > deadline:
            raise SystemExit(f"the pair did not reach {states} within {timeout:.0f} s")
        time.sleep(2)


def holder(pair: Pair) -> str | None:
    up = [n for n, vm in pair.vms.items() if vm.proc is not None and vm.proc.poll() is None]
    held = [n for n in up if pair.holds_vip(n)]
    return held[0] if len(held) == 1 else None


def sticky_servers(pair: Pair, clients: list[str], tmp: Path) -> list[str]:
    """The real server each client reaches: one C-STORE each (a new object, so that the real
    server's file count grows), from its own source address (the route to the VIP is pointed at
    that source in turn; storescu cannot bind one)."""
    reached = []
    try:
        for client in clients:
            pair.ns.run(["ip", "route", "replace", f"{VIP}/32", "dev", "br0", "src", client], check=True)
            reached.append(pair.store(tmp))
    finally:
        pair.ns.run(["ip", "route", "del", f"{VIP}/32"], check=False)
    return reached


def one_failover(pair: Pair, victim: str, clients: list[str], tmp: Path) -> dict:
    survivor = next(n for n in pair.vms if n != victim)
    before = sticky_servers(pair, clients, tmp)
    time.sleep(2)  # the last stick-table entries reach the peer
    outage = pair.power_off(victim, survivor)
    after = sticky_servers(pair, clients, tmp)
    kept = sum(a == b for a, b in zip(before, after, strict=True))
    say(f"  {victim} powered off: the VIP answered from {survivor} after {outage} s; {kept}/{len(clients)} kept")
    started = time.monotonic()
    pair.vms[victim].start()
    pair.vms[victim].wait_ready(timeout=420)
    wait_states(pair, {victim: "passive", survivor: "active"})
    say(f"  {victim} back as passive in {time.monotonic() - started:.0f} s")
    return {"powered_off": victim, "outage_seconds": outage, "sticky_kept": kept, "sticky_clients": len(clients)}


def late_heartbeats(pair: Pair, since: str) -> int:
    total = 0
    for name in pair.vms:
        journal = f"journalctl -t heartbeat --since '{since}' --no-pager -q"
        out = pair.sh(name, f"{journal} | grep -c 'Late heartbeat'", check=False)
        total += int(out.stdout.strip() or 0)
    return total


def under_load(pair: Pair, minutes: float) -> dict:
    start_holder = holder(pair)
    since = pair.sh("lb1", "date -u '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    for name in pair.vms:
        pair.sh(name, "for i in 1 2; do nohup sh -c 'while :; do :; done' >/dev/null 2>&1 & done")
    moves = 0
    holders: list[str | None] = []
    deadline = time.monotonic() + minutes * 60
    try:
        while time.monotonic() < deadline:
            now = holder(pair)
            if holders and now != holders[-1]:
                moves += 1
                say(f"  the floating IPs moved: {holders[-1]} -> {now}")
            holders.append(now)
            time.sleep(5)
    finally:
        for name in pair.vms:
            pair.sh(name, "pkill -f 'while :; do :; done'", check=False)
    return {
        "minutes": minutes,
        "busy_loops_per_node": 2,
        "holder_at_start": start_holder,
        "floating_ip_moves": moves,
        "late_heartbeat_warnings": late_heartbeats(pair, since),
    }


def markdown(r: dict) -> str:
    m, f, load = r["machine"], r["failovers"], r["false_failovers"]
    lines = [
        "# HA bench: failover, persistence, false failovers",
        "",
        f"Run {r['date']} with `bench/ha/run.py`: two appliance VMs (QEMU, {r['accel']}, 2 vCPU and 4 GiB each)",
        "paired over two bridges in a network namespace, which is also the client, the gateway (ping",
        "node) and the two real servers (dcmtk storescp).",
        "",
        f"Machine: {one_line(m)}",
        "",
        f"Heartbeat timing (the site's `ha`): keepalive {r['keepalive_ms']} ms, deadtime {r['deadtime_ms']} ms.",
        "",
        "## Failover (active node powered off, a client connecting every 50 ms)",
        "",
        "| | |",
        "|---|---|",
        f"| power-offs | {len(f['runs'])} |",
        f"| outage median | {f['median_seconds']} s |",
        f"| outage maximum | {f['max_seconds']} s |",
        f"| outage minus deadtime (median) | {f['median_over_deadtime_seconds']} s |",
        f"| sticky clients on the same real server after failover | {f['sticky_kept_percent']} % |",
        "",
        "| run | powered off | outage (s) | sticky kept |",
        "|---|---|---|---|",
    ]
    for i, run in enumerate(f["runs"], 1):
        lines.append(
            f"| {i} | {run['powered_off']} | {run['outage_seconds']} | {run['sticky_kept']}/{run['sticky_clients']} |"
        )
    lines += [
        "",
        f"## False failovers ({load['minutes']} min, {load['busy_loops_per_node']} busy loops on each node)",
        "",
        f"The floating IPs moved {load['floating_ip_moves']} times; heartbeat logged "
        f"{load['late_heartbeat_warnings']} 'Late heartbeat' warnings.",
        "",
        "## Reading",
        "",
        *r["reading"],
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failovers", type=int, default=10)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--load-minutes", type=float, default=10)
    parser.add_argument("--keepalive-ms", type=int, default=250)
    parser.add_argument("--deadtime-ms", type=int, default=2500)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    dist = settings_path("LB_DIST_DIR")
    disk = artifact(load_manifest(dist), dist, "kvm", ".qcow2")
    timing = f"ha: {{keepalive_ms: {args.keepalive_ms}, deadtime_ms: {args.deadtime_ms}}}"
    site = SITE.replace("ha: {keepalive_ms: 250, deadtime_ms: 2500}", timing)
    clients = [f"10.210.0.{CLIENT_BASE + i}" for i in range(args.clients)]
    machine = describe()  # before the VMs load the machine
    with tempfile.TemporaryDirectory(prefix="bench-ha-") as scratch:
        tmp = Path(scratch)
        keys = provision.make_ssh_key(tmp)
        say("booting the pair")
        with booted_pair(disk, tmp / "lab", keys, site) as pair:
            for client in clients:
                pair.ns.run(["ip", "addr", "add", f"{client}/24", "dev", "br0"], check=True)
            pair_up(pair)
            say("paired; waiting for the passive node's checks")
            time.sleep(10)
            runs = []
            for i in range(args.failovers):
                victim = holder(pair)
                if victim is None:
                    raise SystemExit("no single holder of the floating IPs")
                say(f"failover {i + 1}/{args.failovers}")
                runs.append(one_failover(pair, victim, clients, tmp))
            say(f"false failovers: {args.load_minutes} min under load")
            load = under_load(pair, args.load_minutes)
    outages = [r["outage_seconds"] for r in runs if r["outage_seconds"] is not None]
    deadtime = args.deadtime_ms / 1000
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "accel": "KVM" if qemu.kvm_usable() else "TCG, no KVM",
        "keepalive_ms": args.keepalive_ms,
        "deadtime_ms": args.deadtime_ms,
        "failovers": {
            "runs": runs,
            "median_seconds": round(statistics.median(outages), 2) if outages else None,
            "max_seconds": max(outages) if outages else None,
            "median_over_deadtime_seconds": round(statistics.median(outages) - deadtime, 2) if outages else None,
            "sticky_kept_percent": round(
                100 * sum(r["sticky_kept"] for r in runs) / max(1, sum(r["sticky_clients"] for r in runs)), 1
            ),
        },
        "false_failovers": load,
        "reading": [
            "The goals (median <= 1.0 s, maximum <= 2 s, 100 % sticky, no false failover) are for the product's",
            "default timing, 100/500 ms, on a hypervisor. Under emulation (TCG) the guests run several times",
            "slower, 100/500 ms gives false failovers, and the bench uses the tests' 250/2500 ms: the outage is",
            "then the deadtime plus heartbeat's takeover chain (mach_down, ResourceManager and lbfloat, all",
            "shell under emulation). Persistence carries over; the false-failover count is for 250/2500 ms",
            "under emulation; the outage figures do not, and a hypervisor run is the one that can show the",
            "1.0 s goal.",
        ],
    }
    publish(args.out, "results", results, markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
