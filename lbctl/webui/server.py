"""gunicorn's settings for the web UI: `gunicorn -c python:lbctl.webui.server
'lbctl.webui.app:create_app()'` (lb-webui.service). gunicorn reads the module-level names below
(docs.gunicorn.org, "Settings").

One worker process with threads: the sessions and the failed sign-in counts live in that
process's memory, so there must be exactly one. TLS is gunicorn's (Python's ssl module, TLS 1.2
and newer); gunicorn loads the certificate for every new connection, so a replaced one is used
at once, without a restart.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from lbctl.appliance import WEB_UI_PORT
from lbctl.webui.tls import TLSFiles

_tls = TLSFiles()

# [::] takes IPv4 too (the appliance keeps net.ipv6.bindv6only at 0); the firewall admits the
# management networks only. LB_WEBUI_BIND moves it (tests: a loopback port).
bind = (os.environ.get("LB_WEBUI_BIND") or f"[::]:{WEB_UI_PORT}").split(",")
workers = 1
worker_class = "gthread"
threads = 8
timeout = 60  # seconds a worker may miss its heartbeat (a long request runs in a thread)
graceful_timeout = 10
keepalive = 5
certfile = str(_tls.cert)
keyfile = str(_tls.key)
errorlog = "-"  # standard error: the journal of lb-webui.service
accesslog = None  # the overview refreshes every 5 s; actions are logged by the handlers
loglevel = "info"
proc_name = "lb-webui"
# The largest header block a browser sends is far below these; refuse more.
limit_request_line = 8190
limit_request_fields = 100


def post_worker_init(worker: Any) -> None:
    """The handlers' log lines (sign-ins, actions, updates) go to standard error as well."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger = logging.getLogger("lbctl.webui")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
