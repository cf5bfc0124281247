"""install_networkd_dropins: the generation's VIP drop-ins mirrored into networkd's directory."""

from __future__ import annotations

from pathlib import Path

from lbctl.config.networkd import install_networkd_dropins, networkd_is_live

DROPIN = "50-lbctl-vips.conf"


def generation(root: Path, dropins: dict[str, str]) -> Path:
    for interface, text in dropins.items():
        path = root / "networkd" / f"10-lb-{interface}.network.d" / DROPIN
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    root.mkdir(parents=True, exist_ok=True)
    return root


def test_installs_updates_and_removes_only_lbctl_dropins(tmp_path: Path) -> None:
    live = tmp_path / "run-network"
    live.mkdir()
    (live / "10-lb-eth0.network").write_text("[Match]\nName=eth0\n")  # provisioning's file
    other = live / "10-lb-eth1.network.d" / "10-admin.conf"  # someone else's drop-in
    other.parent.mkdir()
    other.write_text("[Network]\nDNS=1.1.1.1\n")

    first = generation(
        tmp_path / "g1", {"eth0": "[Network]\nAddress=192.168.85.5/32\n", "eth1": "[Network]\nAddress=10.1.1.1/32\n"}
    )
    assert install_networkd_dropins(first, live) is True
    assert (live / "10-lb-eth0.network.d" / DROPIN).read_text() == "[Network]\nAddress=192.168.85.5/32\n"
    assert (live / "10-lb-eth1.network.d" / DROPIN).exists()
    assert install_networkd_dropins(first, live) is False  # nothing to change

    second = generation(tmp_path / "g2", {"eth0": "[Network]\nAddress=192.168.85.6/32\n"})
    assert install_networkd_dropins(second, live) is True
    assert (live / "10-lb-eth0.network.d" / DROPIN).read_text() == "[Network]\nAddress=192.168.85.6/32\n"
    assert not (live / "10-lb-eth1.network.d" / DROPIN).exists()
    assert other.read_text() == "[Network]\nDNS=1.1.1.1\n"  # left alone, and its dir
    assert (live / "10-lb-eth0.network").read_text() == "[Match]\nName=eth0\n"

    empty = generation(tmp_path / "g3", {})
    assert install_networkd_dropins(empty, live) is True
    assert not (live / "10-lb-eth0.network.d").exists()  # lbctl's own dir is gone
    assert sorted(p.name for p in live.iterdir()) == ["10-lb-eth0.network", "10-lb-eth1.network.d"]


def test_missing_networkd_directory_is_created(tmp_path: Path) -> None:
    g = generation(tmp_path / "g", {"eth2": "[Network]\nAddress=10.0.0.1/32\n"})
    assert install_networkd_dropins(g, tmp_path / "not-yet") is True
    assert (tmp_path / "not-yet" / "10-lb-eth2.network.d" / DROPIN).exists()


def test_only_the_real_directory_triggers_networkctl(tmp_path: Path) -> None:
    assert networkd_is_live(tmp_path) is False
