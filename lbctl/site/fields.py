"""The settings of a virtual service that a preset gives and a site file may override.

Written once here: the preset table (preset.py) takes these with defaults from the preset's
`defaults:` block, the site table (schema.py) with defaults from the preset.
"""

from __future__ import annotations

from ..inputs import Field
from ..inputs.types import Choice, Integer
from .healthchecks import CHECKS

MAX_PERSISTENCE_MINUTES = 7 * 24 * 60

SERVICE_SETTINGS: tuple[Field, ...] = (
    Field("port", Integer(1, 65535), "TCP port of the virtual service; also the real servers' default port."),
    Field(
        "persistence_minutes",
        Integer(1, MAX_PERSISTENCE_MINUTES),
        "Source-IP persistence: a client returns to the same real server as long as it opens a "
        "new connection within this time.",
    ),
    Field("check", Choice(tuple(CHECKS), "a health check"), "Health check of the real servers (see Health checks)."),
    Field("check_interval_seconds", Integer(1, 3600), "Time between two checks of a real server."),
    Field(
        "check_timeout_seconds",
        Integer(1, 60),
        "A check not answered within this time fails; must be shorter than the interval.",
    ),
    Field("rise", Integer(1, 20), "Consecutive passed checks before a DOWN server is UP again."),
    Field("fall", Integer(1, 20), "Consecutive failed checks before an UP server is DOWN."),
    Field(
        "max_connections",
        Integer(1, 50000),
        "Clients connected at once; more wait until one closes. Each service has its own share, so one "
        "busy service cannot take another's connections.",
    ),
    Field(
        "idle_timeout_minutes",
        Integer(1, 10080),
        "A connection without traffic in either direction for this long is closed.",
    ),
)
SETTING_KEYS = tuple(f.key for f in SERVICE_SETTINGS)
