"""The web UI on TCP 9443: the vendor WebUI's pages (System Overview, drain and halt, HA, the
site configuration, Software Update, logs) over HTTPS, and the appliance's Prometheus gauges.

    app.py       the Flask application: one handler per page and action, each calling lbctl's own
                 functions (lbctl.actions, lbctl.status, lbctl.update) in-process
    auth.py      sign-in against the admin password hash, sessions, CSRF tokens, the rate limit
    tls.py       the per-instance self-signed certificate, and replacing it with the site's own
    metrics.py   the appliance gauges in Prometheus' text format (HAProxy exports its own)
    journal.py   the recent journal lines of HAProxy, heartbeat and provisioning
    server.py    gunicorn's settings (the unit lb-webui.service starts it)

The pages are Jinja2 templates in lbctl/templates/webui/, plain HTML that works without
JavaScript; static/ holds the style sheet and the small script that refreshes the overview.
"""
