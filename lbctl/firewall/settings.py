"""firewall.yaml: who may manage the appliance (SSH, the web UI) - the vendor's lockdown wizard.

Without a lockdown, management is open from anywhere, as the vendor's unpaired default is.
`lbctl firewall lockdown --network CIDR[,CIDR...]` writes this file; provisioning may bring one
(credential lb.firewall, firewall.yaml on the config disk).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..appliance import DATA_DIR
from ..inputs import Field, InputKind, ListOf, Table
from ..inputs.addresses import IPNetwork
from ..inputs.types import Network

FIREWALL_DIR = DATA_DIR / "firewall"
SETTINGS_FILE = FIREWALL_DIR / "firewall.yaml"


@dataclass(frozen=True)
class FirewallSettings:
    management_networks: tuple[IPNetwork, ...] = ()  # empty: management open from anywhere

    @property
    def locked_down(self) -> bool:
        return bool(self.management_networks)


FIREWALL = Table(
    (
        Field(
            "management_networks",
            ListOf(Network(), unique=True, item_kind="networks"),
            "Networks SSH and the web UI are open from (the lockdown). Empty or absent: from anywhere. The HA "
            "peer is always admitted.",
            default=(),
        ),
    ),
    title="firewall.yaml",
    build=lambda s: FirewallSettings(**s.values),
    what="management_networks",
)
FIREWALL_KIND: InputKind[FirewallSettings] = InputKind("firewall", "firewall.yaml", FIREWALL)


def load_settings() -> FirewallSettings:
    """The settings in force (FirewallSettings() when no file was written)."""
    if not SETTINGS_FILE.exists():
        return FirewallSettings()
    return FIREWALL_KIND.read(str(SETTINGS_FILE))
