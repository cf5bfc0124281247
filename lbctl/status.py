"""The System Overview: every virtual service and real server, as HAProxy's runtime API sees them.

One typed model (the dataclasses below) is read by `lbctl status`, `lbctl status --json` (its
:meth:`Status.to_json`), the READY gate at boot and the web UI. Healthy means HAProxy answers and
runs every service of the applied configuration with its frontend OPEN. Real servers that are
DOWN do not make the appliance unhealthy (it does its job: it stops sending clients there); they
are reported, per service, as degraded or down.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from .appliance import Paths, appliance_version
from .config import generations, haproxy

SERVER_STATES = ("UP", "DOWN", "DRAIN", "MAINT")
# HAProxy sections of the appliance's own, not virtual services (haproxy.cfg.j2).
OWN_PROXIES = ("metrics",)


@dataclass(frozen=True)
class CheckResult:
    """A real server's last health check, as HAProxy reports it (`show stat`: check_status ...)."""

    status: str  # L4OK, L7OK, L4CON, L7RSP, PROCOK, ...
    code: int | None  # layer-7 code where the check has one
    duration_ms: int | None
    detail: str  # HAProxy's words, e.g. "Connection refused"


@dataclass(frozen=True)
class ServerStatus:
    label: str
    address: str  # address:port
    state: str  # one of SERVER_STATES (the vendor's words)
    haproxy_status: str  # HAProxy's own ("UP 1/3", "NOLB", ...)
    weight: int | None
    sessions: int
    sessions_total: int
    last_check: CheckResult
    seconds_since_change: int | None
    failed_checks: int


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    vip: str  # VIP:port
    state: str  # the frontend: OPEN, or MISSING/UNKNOWN when HAProxy lacks it
    summary: str = ""
    check: str = ""
    persistence_minutes: int | None = None
    sessions: int = 0
    sessions_total: int = 0
    servers_up: int = 0
    health: str = ""  # ok, degraded (some servers down), down (all down)
    servers: tuple[ServerStatus, ...] = ()


@dataclass(frozen=True)
class HAProxyStatus:
    running: bool
    version: str = ""
    pid: int | None = None
    uptime_seconds: int = 0


@dataclass(frozen=True)
class ClusterStatus:
    """This node's part of an HA pair (lbctl.cluster.report collects it)."""

    node: str
    role: str  # primary or secondary
    state: str  # active, passive, starting, stopped (heartbeat not running), held (after a restore)
    peer: str
    peer_addresses: tuple[str, ...]
    peer_state: str | None  # heartbeat's view of the peer: active, up, dead; None if unknown
    last_heartbeat_seconds: float | None  # age of the last heartbeat packet from the peer
    heartbeat_paths: tuple[str, ...]  # "eth0 -> 10.0.0.3"
    site_digest: str | None  # of this node's applied site file
    peer_site_digest: str | None  # the peer's, when it was asked (cluster status); else None
    same_configuration: bool | None  # None: the peer was not asked or did not answer
    last_replication: dict[str, Any] | None  # time (epoch s), ok, message
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Status:
    version: str
    healthy: bool
    haproxy: HAProxyStatus
    generation: str | None
    services: tuple[ServiceStatus, ...] = ()
    problems: tuple[str, ...] = ()
    cluster: ClusterStatus | None = None

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if not self.haproxy.running:
            data["haproxy"] = {"running": False}
        return data


def server_state(raw: str) -> str:
    """HAProxy's status column in the vendor's four words. Transitions count as where the server
    still is: 'UP 1/3' (failing, not yet DOWN) is UP, 'DOWN 1/2' (recovering) is DOWN."""
    word = raw.split(" ")[0].upper()
    if word in SERVER_STATES:
        return word
    if word == "NOLB":
        return "DRAIN"
    if raw == "no check":
        return "UP"
    return raw or "UNKNOWN"


def read_services(paths: Paths) -> dict[str, Any] | None:
    """The applied generation's services summary (services.json), or None."""
    generation = generations.target_of(paths.current)
    if generation is None:
        return None
    try:
        data: dict[str, Any] = json.loads((generation / "services.json").read_text())
        return data
    except (OSError, ValueError):
        return None


def _number(row: dict[str, str], key: str) -> int | None:
    value = row.get(key, "")
    return int(value) if value.lstrip("-").isdigit() else None


def _server(row: dict[str, str], configured: dict[str, Any] | None) -> ServerStatus:
    check = CheckResult(
        status=row.get("check_status", ""),
        code=_number(row, "check_code"),
        duration_ms=_number(row, "check_duration"),
        detail=row.get("last_chk", ""),
    )
    address = row.get("addr") or (f"{configured['address']}:{configured['port']}" if configured else "")
    return ServerStatus(
        label=row["svname"],
        address=address,
        state=server_state(row.get("status", "")),
        haproxy_status=row.get("status", ""),
        weight=_number(row, "weight"),
        sessions=_number(row, "scur") or 0,
        sessions_total=_number(row, "stot") or 0,
        last_check=check,
        seconds_since_change=_number(row, "lastchg"),
        failed_checks=_number(row, "chkfail") or 0,
    )


def collect_status(paths: Paths) -> Status:
    """Everything `lbctl status` shows, read from the applied generation and HAProxy's runtime
    API, and on an HA pair this node's part of it (without asking the peer)."""
    status = _collect_status(paths)
    from .cluster.state import paired

    if not paired():
        return status
    from .cluster.report import collect_cluster

    return dataclasses.replace(status, cluster=collect_cluster(paths, ask_peer=False))


def _collect_status(paths: Paths) -> Status:
    applied = read_services(paths)
    generation = generations.target_of(paths.current)
    version = appliance_version(paths.os_release)
    configured: dict[str, dict[str, Any]] = {s["name"]: s for s in (applied or {}).get("services", [])}
    gen_name = generation.name if generation else None
    try:
        info = haproxy.show_info(paths.admin_socket)
        rows = haproxy.show_stat(paths.admin_socket)
    except haproxy.HAProxyAPIError as exc:
        unknown = tuple(
            ServiceStatus(name=name, vip=f"{s['vip']}:{s['port']}", state="UNKNOWN") for name, s in configured.items()
        )
        return Status(version, False, HAProxyStatus(False), gen_name, unknown, (str(exc),))
    running = HAProxyStatus(True, info.get("Version", ""), _number(info, "Pid"), _number(info, "Uptime_sec") or 0)
    by_proxy: dict[str, dict[str, Any]] = {}
    for row in rows:
        proxy = by_proxy.setdefault(row["pxname"], {"frontend": None, "servers": []})
        if row["svname"] == "FRONTEND":
            proxy["frontend"] = row
        elif row["svname"] != "BACKEND":
            proxy["servers"].append(row)
    problems: list[str] = []
    services: list[ServiceStatus] = []
    names = list(configured) + [
        n for n, p in by_proxy.items() if n not in configured and n not in OWN_PROXIES and p["frontend"]
    ]
    for name in names:
        found = by_proxy.get(name)
        spec: dict[str, Any] = configured.get(name, {})
        vip = f"{spec['vip']}:{spec['port']}" if spec else ""
        if found is None or found["frontend"] is None:
            problems.append(f"{name}: in the applied configuration but not running in HAProxy")
            services.append(ServiceStatus(name=name, vip=vip, state="MISSING"))
            continue
        by_label = {s["label"]: s for s in spec.get("servers", [])}
        servers = tuple(_server(r, by_label.get(r["svname"])) for r in found["servers"])
        up = sum(1 for s in servers if s.state == "UP")
        frontend = found["frontend"]
        state = frontend.get("status", "")
        services.append(
            ServiceStatus(
                name=name,
                vip=vip,
                state=state,
                summary=spec.get("summary", ""),
                check=spec.get("check", ""),
                persistence_minutes=spec.get("persistence_minutes"),
                sessions=_number(frontend, "scur") or 0,
                sessions_total=_number(frontend, "stot") or 0,
                servers_up=up,
                health="ok" if up == len(servers) else ("degraded" if up else "down"),
                servers=servers,
            )
        )
        if state != "OPEN":
            problems.append(f"{name}: frontend is {state or 'unknown'}, not OPEN")
    return Status(version, not problems, running, gen_name, tuple(services), tuple(problems))


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


def format_overview(st: Status) -> str:
    """The System Overview as text: one line per VIP, one per real server below it."""
    head = f"PACS load balancer {st.version}: {'healthy' if st.healthy else 'NOT healthy'}"
    if st.haproxy.running:
        head += (
            f" (HAProxy {st.haproxy.version}, up {duration(st.haproxy.uptime_seconds)}, "
            f"configuration {st.generation or 'none'})"
        )
    lines = [head]
    lines += [f"  problem: {p}" for p in st.problems]
    if st.cluster is not None:
        lines.append(format_cluster_line(st.cluster))
    if not st.services:
        lines.append("  no virtual services configured")
        return "\n".join(lines)
    lines.append("")
    lines.append(f"{'SERVICE / SERVER':<18} {'ADDRESS':<24} {'STATE':<7} {'SESS':>5}  DETAIL")
    for svc in st.services:
        detail = ""
        if svc.health:
            detail = f"{svc.servers_up}/{len(svc.servers)} servers up, check {svc.check}"
            if svc.health != "ok":
                detail += f"  [{svc.health.upper()}]"
        lines.append(f"{svc.name:<18} {svc.vip:<24} {svc.state:<7} {svc.sessions:>5}  {detail}")
        for srv in svc.servers:
            check = srv.last_check
            result = check.status or "-"
            if check.duration_ms is not None and check.duration_ms >= 0:
                result += f" {check.duration_ms}ms"
            text = check.detail.strip("() ")
            if text and text not in (check.status, "tcp-check"):  # '(tcp-check)' says nothing
                result += f" ({text})"
            lines.append(
                f"  {srv.label:<16} {srv.address:<24} {srv.state:<7} {srv.sessions:>5}  "
                f"last check {result}; {srv.state} for {duration(srv.seconds_since_change)}"
            )
    return "\n".join(lines)


def format_cluster_line(c: ClusterStatus) -> str:
    heard = (
        f"last heartbeat {c.last_heartbeat_seconds:.1f} s ago"
        if c.last_heartbeat_seconds is not None
        else ("no heartbeat heard")
    )
    return f"HA pair: {c.node} {c.role}, {c.state}; peer {c.peer} {c.peer_state or 'unknown'}, {heard}"


def format_cluster(c: ClusterStatus) -> str:
    """`lbctl cluster status` as text."""
    lines = [
        f"this node:      {c.node}, {c.role}, {c.state.upper()}",
        f"peer:           {c.peer} ({', '.join(c.peer_addresses)}), {c.peer_state or 'unknown'} as heartbeat sees it",
        "last heartbeat: "
        + (f"{c.last_heartbeat_seconds:.2f} s ago" if c.last_heartbeat_seconds is not None else "none heard"),
        f"paths:          {'; '.join(c.heartbeat_paths)}",
    ]
    if c.same_configuration is None:
        same = "unknown (the peer did not answer)" if c.peer_site_digest is None else "unknown"
    else:
        same = "the same site on both" if c.same_configuration else "DIFFERENT sites"
    lines.append(f"configuration:  {same} (site {c.site_digest or 'none'}, peer {c.peer_site_digest or '-'})")
    r = c.last_replication
    if r:
        import time

        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r["time"]))
        lines.append(f"replication:    {when}: {'ok' if r['ok'] else 'FAILED'}: {r['message']}")
    else:
        lines.append("replication:    none yet")
    lines += [f"  problem: {p}" for p in c.problems]
    return "\n".join(lines)
