"""Site files of the netns suite: the whole pacs preset on the lab's addresses, fast checks."""

from __future__ import annotations

import copy

from tests.netns.netlab import SERVER_ADDRESSES, SNAT, VIP_DATA, VIP_DICOM

# Timeouts must stay below the interval; with one-second checks that means a 2 s interval.
# Connections per service: this machine lets no process hold more than 20 000 descriptors (hard
# limit, not raisable here), and HAProxy needs about two per connection of the global budget
# (the services' sum); the appliance's unit allows 262 144, for the preset's 9 x 2000.
CONNECTIONS = {"max_connections": 800}
FAST_CHECKS = {"check_interval_seconds": 2, "check_timeout_seconds": 1, "rise": 1, "fall": 2, **CONNECTIONS}
FAST_PING = {"check_interval_seconds": 3, "check_timeout_seconds": 1, "rise": 1, "fall": 1, **CONNECTIONS}


def servers(port: int | None = None) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = [
        {"label": "Server1", "address": SERVER_ADDRESSES["s1"]},
        {"label": "Server2", "address": SERVER_ADDRESSES["s2"]},
    ]
    if port is not None:
        for entry in entries:
            entry["port"] = port
    return entries


# Every service of the preset, as the vendor guide lays them out (DICOM family on one VIP, SQL
# and LDAP on another), with fast checks so that tests do not wait for the production timing.
FULL_SITE: dict = {
    "preset": "pacs",
    "snat_address": SNAT,
    "services": {
        "DICOM": {
            "vip": VIP_DICOM,
            "check": "dicom-echo",
            "called_ae_title": "ANY-SCP",
            **FAST_CHECKS,
            "servers": servers(),
        },
        "DICOM-Secure": {"vip": VIP_DICOM, **FAST_CHECKS, "servers": servers()},
        "DMWL": {"vip": VIP_DICOM, **FAST_PING, "servers": servers()},
        "DMWL-Secure": {"vip": VIP_DICOM, **FAST_PING, "servers": servers()},
        "SQL": {"vip": VIP_DATA, **FAST_CHECKS, "servers": servers()},
        "LDAP": {"vip": VIP_DATA, "check": "ldap", **FAST_CHECKS, "servers": servers()},
        "LDAP-Secure": {"vip": VIP_DATA, "check": "ldap", **FAST_CHECKS, "servers": servers()},
        "QRSCP": {"vip": VIP_DICOM, **FAST_PING, "servers": servers()},
        "QRSCP-Secure": {"vip": VIP_DICOM, **FAST_PING, "servers": servers()},
    },
}


def full_site() -> dict:
    return copy.deepcopy(FULL_SITE)
