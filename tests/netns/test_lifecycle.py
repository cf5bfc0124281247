"""Changing the running appliance: reloads keep persistence, failures change nothing, rollback,
server states, the first-boot empty configuration."""

from __future__ import annotations

import os
import sys

import pytest

from lbctl.config import haproxy as runtime
from tests.netns.appliance import HAPROXY_VERSION, Appliance
from tests.netns.backends import Backends
from tests.netns.clients import sql_server_name, worklist_servers
from tests.netns.netlab import CLIENT_ADDRESSES, SERVER_ADDRESSES, VIP_DATA, VIP_DICOM, Lab, wait_until
from tests.netns.sites import full_site


def current_generation(appliance: Appliance) -> str:
    return os.readlink(appliance.state_dir / "current")


def worker_pid(appliance: Appliance) -> int:
    return int(runtime.show_info(appliance.admin_socket)["Pid"])


@pytest.mark.skipif(
    tuple(int(x) for x in HAPROXY_VERSION.split(".")[:2]) < (3, 0),
    reason=f"HAProxy {HAPROXY_VERSION} here does not hand stick tables to the new worker on a "
    "master-worker reload; the appliance's 3.0 does (run after an image build)",
)
def test_reload_keeps_persistence_tables(running: Appliance, lab: Lab) -> None:
    sources = CLIENT_ADDRESSES[:8]
    before = worklist_servers(lab, VIP_DICOM, sources)
    table = running.table("DMWL")
    assert {s: table[s] for s in sources} == {s: {"s1": "Server1", "s2": "Server2"}[v[0]] for s, v in before.items()}
    pid = worker_pid(running)

    site = full_site()
    site["services"]["QRSCP"]["persistence_minutes"] = 5  # any change makes a new generation
    result = running.apply(site)
    assert "HAProxy reloaded seamlessly" in result.stdout, result.stdout
    assert worker_pid(running) != pid, "no new HAProxy worker: the reload did not happen"

    # The new worker gets the table from the old one over the local peer connection, which takes
    # a moment after the reload returns; the entries must all arrive, unchanged.
    wanted = {s: table[s] for s in sources}
    arrived = lambda: {s: running.table("DMWL").get(s) for s in sources} == wanted  # noqa: E731
    try:
        wait_until(arrived, 10, "the stick table handed to the new worker")
    except Exception:
        after = running.table("DMWL")
        raise AssertionError(
            f"persistence entries were lost or changed by the reload: "
            f"{ {s: after.get(s) for s in sources} } != {wanted}"
        ) from None
    assert worklist_servers(lab, VIP_DICOM, sources) == before


def test_invalid_site_changes_nothing(running: Appliance) -> None:
    generation, pid = current_generation(running), worker_pid(running)
    site = full_site()
    site["services"]["DICOM"]["vip"] = "10.77.1.300"
    result = running.apply(site, check=False)
    assert result.returncode == 1
    assert "error: services.DICOM.vip: '10.77.1.300' is not an IPv4 or IPv6 address" in result.stderr
    assert "Traceback" not in result.stderr
    assert current_generation(running) == generation and worker_pid(running) == pid


def test_failed_reload_leaves_the_running_configuration(running: Appliance, lab: Lab, backends: Backends) -> None:
    """A configuration HAProxy accepts (-c) but cannot start: its new port is taken. lbctl must
    notice, put the previous generation back, and HAProxy must keep serving the old one."""
    generation = current_generation(running)
    blocker = lab.spawn(
        "lb",
        "port-blocker",
        [
            sys.executable,
            "-c",
            f"import socket,time; s=socket.socket(); s.bind(('{VIP_DATA}', 11433)); s.listen(); time.sleep(600)",
        ],
    )
    lab.wait_port("lb", VIP_DATA, 11433)
    try:
        site = full_site()
        site["services"]["SQL"]["port"] = 11433
        for server in site["services"]["SQL"]["servers"]:
            server["port"] = 1433
        result = running.apply(site, check=False)
        assert result.returncode == 1, result.stdout
        assert "nothing was changed" in result.stderr and "Traceback" not in result.stderr, result.stderr
    finally:
        blocker.stop()
    assert current_generation(running) == generation
    status = running.status()
    assert status["healthy"], status["problems"]
    sql = next(s for s in status["services"] if s["name"] == "SQL")
    assert sql["vip"] == f"{VIP_DATA}:1433"
    assert sql_server_name(lab, VIP_DATA, 1433) in ("s1", "s2")  # still served on the old port


def test_rollback_restores_the_previous_configuration(running: Appliance, lab: Lab) -> None:
    first = current_generation(running)
    site = full_site()
    del site["services"]["SQL"]
    running.apply(site, remove=("SQL",))
    assert "SQL" not in [s["name"] for s in running.status()["services"]]
    second = current_generation(running)

    result = running.lbctl("rollback")
    assert "HAProxy reloaded seamlessly" in result.stdout
    assert current_generation(running) == first
    assert os.readlink(running.state_dir / "last-good") == second
    status = running.status()
    assert status["healthy"] and "SQL" in [s["name"] for s in status["services"]]
    assert sql_server_name(lab, VIP_DATA) in ("s1", "s2")
    listing = running.lbctl("generations").stdout
    assert f"{os.path.basename(first)}  current" in listing


def test_drain_halt_online_and_states_survive_a_reload(running: Appliance, lab: Lab) -> None:
    running.lbctl("server", "drain", "DMWL", "Server1")
    assert running.server("DMWL", "Server1")["state"] == "DRAIN"
    # New clients (no persistence entry yet) all go to Server2 while Server1 drains.
    fresh = CLIENT_ADDRESSES[16:20]
    assert all(servers == ["s2"] for servers in worklist_servers(lab, VIP_DICOM, fresh).values())

    running.lbctl("server", "halt", "DMWL", "Server1")
    assert running.server("DMWL", "Server1")["state"] == "MAINT"
    site = full_site()
    site["services"]["QRSCP"]["persistence_minutes"] = 7
    running.apply(site)  # a reload: the halted server must stay halted
    assert running.server("DMWL", "Server1")["state"] == "MAINT"

    running.lbctl("server", "online", "DMWL", "Server1")
    running.wait_server_state("DMWL", "Server1", "UP")

    result = running.lbctl("server", "halt", "DMWL", "Server9", check=False)
    assert result.returncode == 1 and "Server9: no such real server" in result.stderr


def test_halt_closes_the_servers_connections(running: Appliance, lab: Lab) -> None:
    """halt = maintenance now: an open LDAP connection to the halted server is cut."""
    holder = lab.spawn(
        "cl",
        "ldap-holder",
        [sys.executable, "-c", f"import socket,time; s=socket.create_connection(('{VIP_DATA}', 3890)); time.sleep(60)"],
    )
    try:
        busy = wait_until(
            lambda: next(
                (
                    s
                    for s in running.status()["services"]
                    if s["name"] == "LDAP" and any(r["sessions"] for r in s["servers"])
                ),
                None,
            ),
            10,
            "an LDAP session",
        )
        label = next(r["label"] for r in busy["servers"] if r["sessions"])
        running.lbctl("server", "halt", "LDAP", label)
        wait_until(lambda: running.server("LDAP", label)["sessions"] == 0, 10, "the session to be closed")
    finally:
        holder.stop()
        running.lbctl("server", "online", "LDAP", label)


def test_changed_server_address_is_used_after_reload(running: Appliance, lab: Lab) -> None:
    """Server states are handed over on reloads (server-state-file); a new address in the site
    file must still win over the address in that state."""
    site = full_site()
    servers = site["services"]["SQL"]["servers"]
    servers[0]["address"], servers[1]["address"] = SERVER_ADDRESSES["s2"], SERVER_ADDRESSES["s1"]
    running.apply(site)
    assert running.server("SQL", "Server1")["address"] == f"{SERVER_ADDRESSES['s2']}:1433"
    assert running.server("SQL", "Server2")["address"] == f"{SERVER_ADDRESSES['s1']}:1433"
    running.wait_check("SQL", "Server2", "UP", "L7OK")


def test_init_then_first_apply(appliance: Appliance, backends: Backends, lab: Lab) -> None:
    result = appliance.lbctl("init")
    assert "no services" in result.stdout
    assert appliance.lbctl("init").stdout.strip() == "a configuration is already in place"
    appliance.start()
    status = appliance.status()
    assert status["healthy"] and status["services"] == [], status
    assert appliance.lbctl("status").returncode == 0

    result = appliance.apply(full_site())
    assert "HAProxy reloaded seamlessly" in result.stdout
    status = appliance.status()
    assert status["healthy"] and len(status["services"]) == 9
    assert worklist_servers(lab, VIP_DICOM, CLIENT_ADDRESSES[:1])


def test_status_is_unhealthy_without_haproxy(appliance: Appliance) -> None:
    appliance.apply(full_site())
    result = appliance.lbctl("status", "--json", check=False)
    assert result.returncode == 1
    assert "HAProxy is not running" in result.stdout
    assert "configuration unchanged" in appliance.apply(full_site()).stdout
    site = full_site()
    del site["services"]["SQL"]
    assert "HAProxy is not running; it starts with this configuration" in appliance.apply(site, remove=("SQL",)).stdout
