"""Source-IP persistence and health checks acting on traffic: clients stick, spread and move."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import make_dicom_file
from tests.netns.appliance import Appliance
from tests.netns.backends import Backends
from tests.netns.clients import dicom_client, sql_server_name, worklist_servers
from tests.netns.netlab import CLIENT_ADDRESSES, VIP_DATA, VIP_DICOM, Lab

SERVER_OF = {"s1": "Server1", "s2": "Server2"}
LABEL_OF = {"Server1": "s1", "Server2": "s2"}


def test_same_client_stays_and_different_clients_spread(running: Appliance, lab: Lab) -> None:
    sources = CLIENT_ADDRESSES[:10]
    answers = worklist_servers(lab, VIP_DICOM, sources, repeat=3)
    for source, servers in answers.items():
        assert len(set(servers)) == 1, f"{source} was sent to {servers}: persistence broken"
    used = {servers[0] for servers in answers.values()}
    assert used == {"s1", "s2"}, f"10 clients all went to {used}: no spreading"
    table = running.table("DMWL")
    for source, servers in answers.items():
        assert table[source] == SERVER_OF[servers[0]], f"stick table {table} disagrees for {source}"


def test_sql_client_stays_on_its_server(running: Appliance, lab: Lab) -> None:
    names = {sql_server_name(lab, VIP_DATA) for _ in range(4)}
    assert len(names) == 1, names


def store_from(lab: Lab, source: str, directory: Path, backends: Backends) -> str:
    """C-STORE of a new object from one client address; returns the real server it landed on."""
    file = directory / "obj.dcm"
    uid = make_dicom_file(file)
    result = dicom_client(lab, "store", "--host", VIP_DICOM, "--port", "104", "--file", str(file), "--source", source)
    assert result[0]["ok"], result
    holders = [name for name, s in backends.servers.items() if any(uid in p.name for p in s.dicom_dir.iterdir())]
    assert len(holders) == 1, holders
    return holders[0]


def test_dead_real_server_is_marked_down_and_its_clients_move(
    running: Appliance, backends: Backends, lab: Lab, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    client = CLIENT_ADDRESSES[3]
    first = store_from(lab, client, tmp_path, backends)
    assert store_from(lab, client, tmp_path, backends) == first
    other = "s2" if first == "s1" else "s1"
    backends.stop(first, "dicom")
    try:
        down = running.wait_server_state("DICOM", SERVER_OF[first], "DOWN", timeout=15)
        assert down["last_check"]["status"].startswith(("L4", "L7")), down
        assert running.server("DICOM", SERVER_OF[other])["state"] == "UP"
        assert running.status()["healthy"]
        # The persistent client now lands on the server still UP, and stays there.
        assert store_from(lab, client, tmp_path, backends) == other
        assert running.table("DICOM")[client] == SERVER_OF[other]
    finally:
        backends.start(first, "dicom")
    running.wait_server_state("DICOM", SERVER_OF[first], "UP", timeout=15)
    assert store_from(lab, client, tmp_path, backends) == other, "a moved client must not bounce back"


def test_ping_check_follows_the_real_server(running: Appliance, lab: Lab) -> None:
    """The vendor's ping check (an external script run by HAProxy as user haproxy): a real server
    that stops answering ICMP goes DOWN, and the DMWL clients stuck to it move."""
    sources = CLIENT_ADDRESSES[10:16]
    before = worklist_servers(lab, VIP_DICOM, sources)
    stuck_to_s2 = [s for s, servers in before.items() if servers[0] == "s2"]
    assert stuck_to_s2, before
    lab.ip("s2", "link", "set", "eth0", "down")
    try:
        server = running.wait_server_state("DMWL", "Server2", "DOWN", timeout=15)
        assert server["last_check"]["status"] == "PROCERR", server
        moved = worklist_servers(lab, VIP_DICOM, stuck_to_s2)
        assert all(servers == ["s1"] for servers in moved.values()), moved
    finally:
        lab.ip("s2", "link", "set", "eth0", "up")
        lab.ip("s2", "route", "replace", "default", "via", "10.77.2.1")
    running.wait_check("DMWL", "Server2", "UP", "PROCOK", timeout=15)
