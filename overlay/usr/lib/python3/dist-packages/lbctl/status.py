"""The System Overview: every virtual service and real server, as HAProxy's runtime API sees them.

Healthy means HAProxy answers and runs every service of the applied configuration with its
frontend OPEN. Real servers that are DOWN do not make the appliance unhealthy (the appliance does
its job: it stops sending clients there); they are reported, per service, as degraded or down.
"""
from __future__ import annotations

import json

from . import runtime, state
from .paths import Paths
from .version import appliance_version

SERVER_STATES = ("UP", "DOWN", "DRAIN", "MAINT")


def server_state(raw: str) -> str:
    """HAProxy's status column in the vendor's four words. Transitions count as where the server
    still is: 'UP 1/3' (failing, not yet DOWN) is UP, 'DOWN 1/2' (recovering) is DOWN."""
    word = raw.split(" ")[0].upper()
    if word in ("MAINT", "DRAIN", "UP", "DOWN"):
        return word
    if word == "NOLB":
        return "DRAIN"
    if raw == "no check":
        return "UP"
    return raw or "UNKNOWN"


def read_manifest(paths: Paths) -> dict | None:
    generation = state.target_of(paths.current)
    if generation is None:
        return None
    try:
        return json.loads((generation / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


def number(row: dict, key: str) -> int | None:
    value = row.get(key, "")
    return int(value) if value.lstrip("-").isdigit() else None


def server_entry(row: dict, configured: dict | None) -> dict:
    check = {"status": row.get("check_status", ""), "code": number(row, "check_code"),
             "duration_ms": number(row, "check_duration"), "detail": row.get("last_chk", "")}
    return {
        "label": row["svname"],
        "address": row.get("addr") or (f"{configured['address']}:{configured['port']}" if configured else ""),
        "state": server_state(row.get("status", "")),
        "haproxy_status": row.get("status", ""),
        "weight": number(row, "weight"),
        "sessions": number(row, "scur") or 0,
        "sessions_total": number(row, "stot") or 0,
        "last_check": check,
        "seconds_since_change": number(row, "lastchg"),
        "failed_checks": number(row, "chkfail") or 0,
    }


def collect_status(paths: Paths) -> dict:
    manifest = read_manifest(paths)
    generation = state.target_of(paths.current)
    status: dict = {"version": appliance_version(paths.os_release), "healthy": False,
                    "haproxy": {"running": False},
                    "generation": generation.name if generation else None,
                    "services": [], "problems": []}
    configured = {s["name"]: s for s in (manifest or {}).get("services", [])}
    try:
        info = runtime.show_info(paths.admin_socket)
        rows = runtime.show_stat(paths.admin_socket)
    except runtime.RuntimeError_ as exc:
        status["problems"].append(str(exc))
        status["services"] = [{"name": name, "vip": f"{s['vip']}:{s['port']}", "state": "UNKNOWN",
                               "servers": []} for name, s in configured.items()]
        return status
    status["haproxy"] = {"running": True, "version": info.get("Version", ""), "pid": number(info, "Pid"),
                         "uptime_seconds": number(info, "Uptime_sec") or 0}
    by_proxy: dict[str, dict] = {}
    for row in rows:
        proxy = by_proxy.setdefault(row["pxname"], {"frontend": None, "servers": []})
        if row["svname"] == "FRONTEND":
            proxy["frontend"] = row
        elif row["svname"] != "BACKEND":
            proxy["servers"].append(row)
    names = list(configured) + [n for n, p in by_proxy.items() if n not in configured and p["frontend"]]
    for name in names:
        proxy = by_proxy.get(name)
        spec = configured.get(name, {})
        if proxy is None or proxy["frontend"] is None:
            status["problems"].append(f"{name}: in the applied configuration but not running in HAProxy")
            status["services"].append({"name": name, "vip": f"{spec['vip']}:{spec['port']}", "state": "MISSING",
                                       "servers": []})
            continue
        servers_configured = {s["label"]: s for s in spec.get("servers", [])}
        servers = [server_entry(r, servers_configured.get(r["svname"])) for r in proxy["servers"]]
        up = sum(1 for s in servers if s["state"] == "UP")
        state_ = proxy["frontend"].get("status", "")
        status["services"].append({
            "name": name,
            "summary": spec.get("summary", ""),
            "vip": f"{spec['vip']}:{spec['port']}" if spec else "",
            "state": state_,
            "check": spec.get("check", ""),
            "persistence_minutes": spec.get("persistence_minutes"),
            "sessions": number(proxy["frontend"], "scur") or 0,
            "sessions_total": number(proxy["frontend"], "stot") or 0,
            "servers_up": up,
            "health": "ok" if up == len(servers) else ("degraded" if up else "down"),
            "servers": servers,
        })
        if state_ != "OPEN":
            status["problems"].append(f"{name}: frontend is {state_ or 'unknown'}, not OPEN")
    status["healthy"] = not status["problems"]
    return status


def duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_overview(st: dict) -> str:
    """The System Overview as text: one line per VIP, one per real server below it."""
    head = f"PACS load balancer {st['version']}: {'healthy' if st['healthy'] else 'NOT healthy'}"
    if st["haproxy"]["running"]:
        head += (f" (HAProxy {st['haproxy']['version']}, up {duration(st['haproxy']['uptime_seconds'])}, "
                 f"configuration {st['generation'] or 'none'})")
    lines = [head]
    lines += [f"  problem: {p}" for p in st["problems"]]
    if not st["services"]:
        lines.append("  no virtual services configured")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"{'SERVICE / SERVER':<18} {'ADDRESS':<24} {'STATE':<7} {'SESS':>5}  DETAIL")
    for svc in st["services"]:
        detail = ""
        if "servers_up" in svc:
            detail = f"{svc['servers_up']}/{len(svc['servers'])} servers up, check {svc['check']}"
            if svc["health"] != "ok":
                detail += f"  [{svc['health'].upper()}]"
        lines.append(f"{svc['name']:<18} {svc['vip']:<24} {svc['state']:<7} {svc.get('sessions', 0):>5}  {detail}")
        for srv in svc["servers"]:
            check = srv["last_check"]
            result = check["status"] or "-"
            if check["duration_ms"] is not None and check["duration_ms"] >= 0:
                result += f" {check['duration_ms']}ms"
            detail = check["detail"].strip("() ")
            if detail and detail not in (check["status"], "tcp-check"):   # '(tcp-check)' says nothing
                result += f" ({detail})"
            lines.append(f"  {srv['label']:<16} {srv['address']:<24} {srv['state']:<7} {srv['sessions']:>5}  "
                         f"last check {result}; {srv['state']} for {duration(srv['seconds_since_change'])}")
    return "\n".join(lines)

