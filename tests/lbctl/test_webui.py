"""The web UI's handlers, one by one, through Flask's test client: sign-in and sessions, CSRF, the
failed sign-in limit, the site validation errors at their line, the confirmations, the logs
filter, the metrics, and the certificate. The pages against a running HAProxy, in a real
browser, are tests/netns/test_webui_browser.py."""

from __future__ import annotations

import json
import logging
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from lbctl import actions
from lbctl.appliance import Paths
from lbctl.webui import auth, tls
from lbctl.webui.app import PREFIX, WebSettings, WebState, create_app

PASSWORD = "correct horse battery staple"


def crypt_hash(password: str, method: str = "-6") -> str:
    return subprocess.run(["openssl", "passwd", method, password], capture_output=True, text=True, check=True).stdout


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class UI:
    app: Flask
    client: FlaskClient
    tmp: Path
    clock: Clock

    @property
    def state(self) -> WebState:
        state: WebState = self.app.extensions["lbadmin"]
        return state

    def sign_in(self, password: str = PASSWORD, user: str = "admin", **environ: str):
        extra = {"environ_base": environ} if environ else {}
        return self.client.post(f"{PREFIX}/login", data={"user": user, "password": password}, **extra)

    def csrf(self) -> str:
        page = self.client.get(f"{PREFIX}/config").get_data(as_text=True)
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match, page
        return match.group(1)


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[UI]:
    (tmp_path / "hash").write_text(crypt_hash(PASSWORD))
    settings = WebSettings(
        paths=Paths(tmp_path / "state", tmp_path / "admin.sock", tmp_path / "master.sock", Path("/nonexistent")),
        password=auth.PasswordFile(tmp_path / "hash"),
        upload_dir=tmp_path / "upload",
        tls=tls.TLSFiles(tmp_path / "tls"),
        reboot=("true",),
    )
    app = create_app(settings)
    clock = Clock()
    state: WebState = app.extensions["lbadmin"]
    state.sessions = auth.Sessions(clock=clock)
    state.failures = auth.FailureLimit(clock=clock)
    yield UI(app, app.test_client(), tmp_path, clock)


def configure(ui: UI, services: dict[str, list[str]]) -> None:
    """An applied generation's services.json (what lbctl.status.read_services reads), no HAProxy."""
    generation = ui.tmp / "state" / "generations" / "0001"
    generation.mkdir(parents=True)
    summary = {
        "services": [
            {"name": name, "vip": "10.0.0.10", "port": 104, "servers": [{"label": label} for label in labels]}
            for name, labels in services.items()
        ]
    }
    (generation / "services.json").write_text(json.dumps(summary))
    (ui.tmp / "state" / "current").symlink_to("generations/0001")


# --- sign-in ----------------------------------------------------------------------------------


def test_pages_need_a_signed_in_session(ui: UI) -> None:
    response = ui.client.get(f"{PREFIX}/config?a=1")
    assert response.status_code == 302
    assert response.headers["Location"] == f"{PREFIX}/login?next=/lbadmin/config?a%3D1"
    # What a script fetches gets a status, not a sign-in page to parse.
    assert ui.client.get(f"{PREFIX}/api/status").status_code == 401
    assert ui.client.get(f"{PREFIX}/?fragment=1").status_code == 401
    assert ui.client.post(f"{PREFIX}/server", data={"target": "drain/DICOM/Server1"}).status_code == 302


def test_sign_in_sets_a_host_only_secure_cookie_and_logs(ui: UI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "lbctl.webui")
    response = ui.sign_in()
    assert response.status_code == 302 and response.headers["Location"] == f"{PREFIX}/"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{auth.SESSION_COOKIE}=")
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    assert "Domain" not in cookie and "Expires" not in cookie  # a session cookie, this host only
    assert ui.client.get(f"{PREFIX}/").status_code == 200
    assert "sign-in: admin from 127.0.0.1" in caplog.text


@pytest.mark.parametrize(
    ("user", "password"),
    [("admin", "wrong"), ("root", PASSWORD), ("admin", ""), ("admin", PASSWORD + " "), ("admin", "x" * 5000)],
)
def test_wrong_credentials_are_refused(ui: UI, user: str, password: str) -> None:
    response = ui.sign_in(password, user)
    assert response.status_code == 401
    assert "Wrong user name or password." in response.get_data(as_text=True)
    assert "Set-Cookie" not in response.headers
    assert ui.client.get(f"{PREFIX}/").status_code == 302


def test_yescrypt_hashes_work(ui: UI) -> None:
    # Debian's default for passwd(1) since bookworm: $y$.
    made = auth.crypt(PASSWORD, "$y$j9T$TzKoWmXx5tS0i4tSGB1JJ.$")
    assert made is not None and made.startswith("$y$j9T$")
    (ui.tmp / "hash").write_text(made + "\n")
    assert ui.sign_in().status_code == 302


def test_no_password_set_means_no_sign_in(ui: UI) -> None:
    (ui.tmp / "hash").unlink()
    page = ui.client.get(f"{PREFIX}/login").get_data(as_text=True)
    assert "No admin password is set on this appliance" in page
    response = ui.sign_in("")
    assert response.status_code == 401
    assert "set one at the console" in response.get_data(as_text=True)
    # A locked account ('!' in shadow) is no password either.
    (ui.tmp / "hash").write_text("!\n")
    assert ui.sign_in("!").status_code == 401


def test_the_next_page_stays_on_this_ui(ui: UI) -> None:
    for target in ("https://evil.example/", "//evil.example/lbadmin/", "/elsewhere"):
        response = ui.client.post(f"{PREFIX}/login", data={"user": "admin", "password": PASSWORD, "next": target})
        assert response.headers["Location"] == f"{PREFIX}/", target
    response = ui.client.post(f"{PREFIX}/login", data={"user": "admin", "password": PASSWORD, "next": "/lbadmin/logs"})
    assert response.headers["Location"] == f"{PREFIX}/logs"


def test_failed_sign_ins_are_limited_per_address(ui: UI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "lbctl.webui")
    for n in range(auth.FAILURES_ALLOWED):
        assert ui.sign_in("guess").status_code == 401
        ui.clock.now += 1
        assert f"sign-in failed from 127.0.0.1 as 'admin' ({n + 1} of 5 allowed in 300 s)" in caplog.text
    # Blocked now, even with the right password; the wait is in the page and in Retry-After.
    response = ui.sign_in()
    assert response.status_code == 429
    wait = int(response.headers["Retry-After"])
    assert auth.FAILURE_WINDOW_SECONDS - auth.FAILURES_ALLOWED <= wait <= auth.FAILURE_WINDOW_SECONDS
    assert f"Try again in {wait} seconds" in response.get_data(as_text=True)
    assert "sign-in from 127.0.0.1 refused: too many failures" in caplog.text
    # Another address is not blocked by this one's failures.
    assert ui.sign_in(REMOTE_ADDR="10.0.0.9").status_code == 302
    # Once the oldest failure leaves the window, this address may try again.
    ui.clock.now += wait
    assert ui.sign_in().status_code == 302


def test_a_success_clears_the_count(ui: UI) -> None:
    for _ in range(auth.FAILURES_ALLOWED - 1):
        ui.sign_in("guess")
    assert ui.sign_in().status_code == 302
    for _ in range(auth.FAILURES_ALLOWED - 1):
        assert ui.sign_in("guess").status_code == 401


def test_sessions_end_idle_after_sign_out_and_with_a_new_password(ui: UI) -> None:
    ui.sign_in()
    ui.clock.now += auth.SESSION_IDLE_SECONDS - 1
    assert ui.client.get(f"{PREFIX}/").status_code == 200  # in use: kept
    ui.clock.now += auth.SESSION_IDLE_SECONDS + 1
    assert ui.client.get(f"{PREFIX}/").status_code == 302

    ui.sign_in()
    token = ui.csrf()
    assert ui.client.post(f"{PREFIX}/logout", data={"csrf": token}).status_code == 302
    assert ui.client.get(f"{PREFIX}/").status_code == 302

    ui.sign_in()
    (ui.tmp / "hash").write_text(crypt_hash("a new one"))  # passwd at the console
    assert ui.client.get(f"{PREFIX}/").status_code == 302
    assert ui.sign_in("a new one").status_code == 302


def test_a_stolen_cookie_value_must_match_a_live_session(ui: UI) -> None:
    ui.client.set_cookie(auth.SESSION_COOKIE, "made-up")
    assert ui.client.get(f"{PREFIX}/").status_code == 302


# --- CSRF -------------------------------------------------------------------------------------


def test_state_changes_need_the_csrf_token(ui: UI, caplog: pytest.LogCaptureFixture) -> None:
    configure(ui, {"DICOM": ["Server1", "Server2"]})
    ui.sign_in()
    token = ui.csrf()
    form = {"target": "drain/DICOM/Server1"}
    assert ui.client.post(f"{PREFIX}/server", data=form).status_code == 403
    assert ui.client.post(f"{PREFIX}/server", data={**form, "csrf": "x" + token[1:]}).status_code == 403
    assert ui.client.post(f"{PREFIX}/config/rollback", data={"confirm": "yes"}).status_code == 403
    assert ui.client.post(f"{PREFIX}/logout").status_code == 403
    assert "no valid CSRF token" in caplog.text
    # Another site's page posting with a leaked token is refused by its Origin.
    for origin in ("https://evil.example", "null", "", "https://localhost"):  # the test client is http://localhost
        refused = ui.client.post(f"{PREFIX}/server", data={**form, "csrf": token}, headers={"Origin": origin})
        assert refused.status_code == 403, origin
        assert refused.headers["Content-Type"].startswith("text/plain")
    # The token in the form (or the X-CSRF-Token header) from this UI passes.
    assert ui.client.post(f"{PREFIX}/server", data={**form, "csrf": token}).status_code == 200
    own = {"Origin": "http://localhost", "X-CSRF-Token": token}
    assert ui.client.post(f"{PREFIX}/server", data=form, headers=own).status_code == 200


def test_every_page_sends_the_security_headers(ui: UI) -> None:
    for path in (f"{PREFIX}/login", "/metrics"):
        headers = ui.client.get(path).headers
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"


# --- actions ----------------------------------------------------------------------------------


def test_drain_and_halt_ask_first(ui: UI) -> None:
    configure(ui, {"DICOM": ["Server1", "Server2"]})
    ui.sign_in()
    token = ui.csrf()
    page = ui.client.post(f"{PREFIX}/server", data={"target": "halt/DICOM/Server1", "csrf": token})
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Halt DICOM/Server1?" in text
    assert 'name="confirm" value="yes"' in text and 'value="halt/DICOM/Server1"' in text
    assert 'href="/lbadmin/">Cancel' in text
    # Confirmed: lbctl's own code runs it, and says why it could not (no HAProxy runs here).
    done = ui.client.post(f"{PREFIX}/server", data={"target": "halt/DICOM/Server1", "csrf": token, "confirm": "yes"})
    assert done.status_code == 302
    overview = ui.client.get(f"{PREFIX}/").get_data(as_text=True)
    assert "HAProxy is not running" in overview
    # A server that is not configured gets no confirmation page, and lbctl's check when confirmed.
    unknown = ui.client.post(f"{PREFIX}/server", data={"target": "drain/DICOM/Server9", "csrf": token})
    assert unknown.status_code == 302
    assert "DICOM/Server9: no such real server" in ui.client.get(f"{PREFIX}/").get_data(as_text=True)
    forced = {"target": "drain/SQL/Server1", "csrf": token, "confirm": "yes"}
    ui.client.post(f"{PREFIX}/server", data=forced)
    assert "SQL: no such virtual service (configured: DICOM)" in ui.client.get(f"{PREFIX}/").get_data(as_text=True)
    # Malformed targets are a client error, not an action.
    for target in ("explode/DICOM/Server1", "drain/DICOM", ""):
        assert ui.client.post(f"{PREFIX}/server", data={"target": target, "csrf": token}).status_code == 400


def test_takeover_asks_first_and_says_why_it_cannot(ui: UI) -> None:
    ui.sign_in()
    token = ui.csrf()
    page = ui.client.post(f"{PREFIX}/cluster/takeover", data={"csrf": token}).get_data(as_text=True)
    assert "Take over?" in page and "floating IPs" in page
    ui.client.post(f"{PREFIX}/cluster/takeover", data={"csrf": token, "confirm": "yes"})
    assert "heartbeat is not running on this node" in ui.client.get(f"{PREFIX}/").get_data(as_text=True)
    assert ui.client.post(f"{PREFIX}/cluster/explode", data={"csrf": token}).status_code == 404


# --- configuration ----------------------------------------------------------------------------


EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "site.yaml").read_text()


def broken_site() -> tuple[str, int]:
    """The example site with one VIP made invalid; returns the text and that line's number."""
    lines = EXAMPLE.splitlines()
    number = next(i for i, line in enumerate(lines) if re.match(r"\s+vip:", line))
    lines[number] = re.sub(r"vip:.*", "vip: 10.0.0.300", lines[number])
    return "\n".join(lines) + "\n", number + 1


def test_an_invalid_site_shows_each_problem_at_its_line(ui: UI) -> None:
    ui.sign_in()
    text, line = broken_site()
    response = ui.client.post(f"{PREFIX}/config/check", data={"csrf": ui.csrf(), "site": text})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "The site file is not valid: 1 problem" in page
    problem = re.search(rf'<td class="problem" data-line="{line}" role="alert">line {line}: ([^<]+)</td>', page)
    assert problem, page
    assert "10.0.0.300" in problem.group(1) and "IP" in problem.group(1)
    # The row before the problem is the line itself, and the editor keeps the text to correct it.
    assert re.search(rf'<tr id="line-{line}"><th scope="row">{line}</th><td><code>\s+vip: 10.0.0.300</code>', page)
    assert "vip: 10.0.0.300" in page.split('<textarea id="site"')[1]


def test_an_uploaded_file_wins_and_bad_bytes_are_an_error(ui: UI) -> None:
    import io

    ui.sign_in()
    data = {"csrf": ui.csrf(), "site": EXAMPLE, "upload": (io.BytesIO(b"preset: pacs\n\xff\xfe\n"), "site.yaml")}
    response = ui.client.post(f"{PREFIX}/config/check", data=data, content_type="multipart/form-data")
    assert response.status_code == 422
    yaml_error = ui.client.post(
        f"{PREFIX}/config/check",
        data={"csrf": ui.csrf(), "upload": (io.BytesIO(b"services: [\n"), "site.yaml")},
        content_type="multipart/form-data",
    )
    assert yaml_error.status_code == 422
    assert re.search(r'class="problem" data-line="\d+"', yaml_error.get_data(as_text=True))


def test_a_valid_site_is_shown_with_its_diff_before_it_is_applied(ui: UI) -> None:
    ui.sign_in()
    response = ui.client.post(f"{PREFIX}/config/check", data={"csrf": ui.csrf(), "site": EXAMPLE})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    names = [s.name for s in actions.parse_site(EXAMPLE).services]
    assert f"The site file is valid: {len(names)} virtual services ({', '.join(names)})" in page
    assert '<pre class="diff">' in page and "<ins>+# Site file of a Philips IntelliSpace PACS" in page
    assert 'action="/lbadmin/config/apply"' in page


def test_an_invalid_site_posted_to_apply_is_refused_too(ui: UI) -> None:
    ui.sign_in()
    text, _ = broken_site()
    response = ui.client.post(f"{PREFIX}/config/apply", data={"csrf": ui.csrf(), "site": text})
    assert response.status_code == 422
    assert not (ui.tmp / "state" / "generations").exists()


def test_rollback_asks_first_and_says_when_there_is_nothing(ui: UI) -> None:
    ui.sign_in()
    token = ui.csrf()
    assert "Roll back the configuration?" in ui.client.post(f"{PREFIX}/config/rollback", data={"csrf": token}).get_data(
        as_text=True
    )
    ui.client.post(f"{PREFIX}/config/rollback", data={"csrf": token, "confirm": "yes"})
    assert "no earlier configuration to roll back to" in ui.client.get(f"{PREFIX}/config").get_data(as_text=True)


def test_an_unknown_generation_in_a_diff_is_said(ui: UI) -> None:
    ui.sign_in()
    page = ui.client.get(f"{PREFIX}/config?a=0001&b=../../etc").get_data(as_text=True)
    assert "no such generation: 0001" in page


# --- update, logs, metrics --------------------------------------------------------------------


def test_an_update_needs_both_files(ui: UI) -> None:
    import io

    ui.sign_in()
    data = {"csrf": ui.csrf(), "archive": (io.BytesIO(b"x"), "lbappliance-0.2.0-update.tar")}
    ui.client.post(f"{PREFIX}/update", data=data, content_type="multipart/form-data")
    page = ui.client.get(f"{PREFIX}/update").get_data(as_text=True)
    assert "choose both files" in page
    assert ui.state.update.state == "idle"


def test_uploads_are_bounded(ui: UI) -> None:
    ui.sign_in()
    response = ui.client.post(f"{PREFIX}/config/check", data={"csrf": ui.csrf(), "site": "x" * (2 << 20)})
    assert response.status_code == 413


def test_logs_are_filtered_and_escaped(ui: UI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [
        {"__REALTIME_TIMESTAMP": "1764489600000000", "PRIORITY": "6", "_SYSTEMD_UNIT": "haproxy.service",
         "MESSAGE": "Server DICOM/Server1 is DOWN, reason: Layer4 connection problem"},
        {"__REALTIME_TIMESTAMP": "1764489601000000", "PRIORITY": "3", "_SYSTEMD_UNIT": "haproxy.service",
         "MESSAGE": "<script>alert(1)</script> proxy DICOM has no server available!"},
        {"__REALTIME_TIMESTAMP": "1764489602000000", "PRIORITY": "6", "_SYSTEMD_UNIT": "haproxy.service",
         "MESSAGE": [0x68, 0x69, 0xFF]},
    ]  # fmt: skip
    journal = tmp_path / "journal.json"
    journal.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    fake = tmp_path / "journalctl"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\ncat {journal}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("LBCTL_JOURNALCTL", str(fake))
    ui.sign_in()
    page = ui.client.get(f"{PREFIX}/logs?source=haproxy&text=dicom&lines=100").get_data(as_text=True)
    assert "2 lines of haproxy.service containing" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "2025-11-30 08:00:00" in page
    args = (tmp_path / "args").read_text().split()
    assert "--lines=100" in args and "--unit" in args and "haproxy.service" in args
    ui.client.get(f"{PREFIX}/logs?source=haproxy&priority=error")
    assert "--priority=0..3" in (tmp_path / "args").read_text()
    for bad in ("source=etc", "priority=loud", "lines=7", "lines=x"):
        assert ui.client.get(f"{PREFIX}/logs?{bad}").status_code == 400, bad


def test_metrics_are_open_and_in_prometheus_text_format(ui: UI) -> None:
    response = ui.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.get_data(as_text=True)
    assert re.search(r'^lbappliance_info\{version="[^"]+",slot="unknown"\} 1$', text, re.M)
    assert "\nlbappliance_healthy 0\n" in text and "\nlbappliance_ha_paired 0\n" in text
    assert "\nlbappliance_config_generation 0\n" in text and "\nlbappliance_firewall_lockdown 0\n" in text
    for line in text.splitlines():  # every sample line: name{labels} value
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{[^}]*\})? -?[0-9.e+]+", line), line


# --- the certificate --------------------------------------------------------------------------


def test_each_instance_makes_its_own_certificate_once(tmp_path: Path) -> None:
    one, two = tls.TLSFiles(tmp_path / "one"), tls.TLSFiles(tmp_path / "two")
    made = tls.ensure(one)
    assert made and tls.ensure(one) is None  # kept
    assert tls.ensure(two) != made
    assert one.key.stat().st_mode & 0o777 == 0o600
    assert tls.fingerprint(one.cert.read_bytes()) == made
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(one.cert)], capture_output=True, text=True, check=True
    ).stdout
    assert "prime256v1" in text and "TLS Web Server Authentication" in text


def test_a_site_certificate_is_checked_before_it_replaces_ours(tmp_path: Path) -> None:
    files = tls.TLSFiles(tmp_path / "tls")
    ours = tls.ensure(files)
    key, cert = tls.self_signed("pacs-lb.hospital.example")
    other_key, _ = tls.self_signed("x")
    refusals = {
        b"": "needs exactly one private key; found 0",
        cert: "needs exactly one private key",
        key: "needs the certificate",
        other_key + cert: "the first certificate is not the private key's",
        key + key + cert: "found 2",
        key + cert.replace(b"-----END CERTIFICATE-----", b""): "has no END line",
    }
    for pem, reason in refusals.items():
        with pytest.raises(tls.InputInvalid, match=reason):
            tls.install(pem, files)
        assert tls.fingerprint(files.cert.read_bytes()) == ours  # untouched
    made = tls.install(key + cert, files)
    assert made == tls.fingerprint(cert) != ours
    assert tls.fingerprint(files.cert.with_name("cert.pem.previous").read_bytes()) == ours


def test_the_certificate_upload_installs_it(ui: UI) -> None:
    import io

    tls.ensure(ui.state.settings.tls)
    ui.sign_in()
    key, cert = tls.self_signed("pacs-lb.hospital.example")
    data = {"csrf": ui.csrf(), "pem": (io.BytesIO(key + cert), "lb.pem")}
    ui.client.post(f"{PREFIX}/certificate", data=data, content_type="multipart/form-data")
    page = ui.client.get(f"{PREFIX}/update").get_data(as_text=True)
    assert f"certificate installed (SHA-256 {tls.fingerprint(cert)})" in page
    data = {"csrf": ui.csrf(), "pem": (io.BytesIO(cert), "lb.pem")}
    ui.client.post(f"{PREFIX}/certificate", data=data, content_type="multipart/form-data")
    assert "certificate refused: needs exactly one private key" in ui.client.get(f"{PREFIX}/update").get_data(
        as_text=True
    )


def test_no_certificate_is_installed_while_an_update_runs(ui: UI) -> None:
    import io

    tls.ensure(ui.state.settings.tls)
    before = ui.state.settings.tls.cert.read_bytes()
    ui.sign_in()
    ui.state.update.state = "running"
    key, cert = tls.self_signed("pacs-lb.hospital.example")
    data = {"csrf": ui.csrf(), "pem": (io.BytesIO(key + cert), "lb.pem")}
    ui.client.post(f"{PREFIX}/certificate", data=data, content_type="multipart/form-data")
    assert "an update is running" in ui.client.get(f"{PREFIX}/update").get_data(as_text=True)
    assert ui.state.settings.tls.cert.read_bytes() == before


# --- what a hostile or careless client sends ----------------------------------------------------


def test_parallel_guesses_cannot_pass_the_limit() -> None:
    """The attempt is taken before the password is checked, so threads racing the check get no
    more than the allowed number between them."""
    import threading

    limit = auth.FailureLimit()
    granted: list[int] = []
    barrier = threading.Barrier(40)

    def guess() -> None:
        barrier.wait()
        wait, _ = limit.begin("10.0.0.5")
        if not wait:
            granted.append(1)

    threads = [threading.Thread(target=guess) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == auth.FAILURES_ALLOWED


def test_the_limit_counts_an_ipv6_host_by_its_64() -> None:
    limit = auth.FailureLimit()
    for n in range(auth.FAILURES_ALLOWED):
        assert limit.begin(f"2001:db8:1:2::{n + 1}")[0] == 0
    assert limit.begin("2001:db8:1:2:ffff::9")[0] > 0  # the same /64
    assert limit.begin("2001:db8:1:3::1")[0] == 0  # another one
    assert auth.client_key("::ffff:10.0.0.5") == "10.0.0.5"


def test_the_overviews_refresh_neither_keeps_a_session_nor_takes_its_messages(ui: UI) -> None:
    ui.sign_in()
    token = ui.csrf()
    ui.client.post(f"{PREFIX}/config/rollback", data={"csrf": token, "confirm": "yes"})
    assert ui.client.get(f"{PREFIX}/?fragment=1").status_code == 200
    assert "no earlier configuration" in ui.client.get(f"{PREFIX}/config").get_data(as_text=True)
    for _ in range(5):  # 25 minutes of an open overview, nobody at the keyboard
        ui.clock.now += 300
        assert ui.client.get(f"{PREFIX}/?fragment=1").status_code == 200
    ui.clock.now += auth.SESSION_IDLE_SECONDS - 5 * 300 + 1  # 30 minutes since the last page
    assert ui.client.get(f"{PREFIX}/?fragment=1").status_code == 401
    assert ui.client.get(f"{PREFIX}/").status_code == 302


def test_odd_parameters_are_client_errors_not_crashes(ui: UI) -> None:
    ui.sign_in()
    for query in ("lines=%C2%B2", "lines=" + "9" * 5000, "lines=-1", "source=", "priority=%00"):
        assert ui.client.get(f"{PREFIX}/logs?{query}").status_code == 400, query
    (ui.tmp / "state" / "generations").mkdir(parents=True)
    page = ui.client.get(f"{PREFIX}/config?a=1&b=" + "9" * 300)
    assert page.status_code == 200 and "no such generation" in page.get_data(as_text=True)
    page = ui.client.get(f"{PREFIX}/config?a=%C2%B2&b=1")
    assert page.status_code == 200
    # A newline in the page to return to (a crafted sign-in link) ends on the overview.
    for target in ("/lbadmin/\nSet-Cookie: x=1", "/lbadmin/\r", "/lbadmin/logout", "/lbadmin/logout?x"):
        response = ui.client.post(f"{PREFIX}/login", data={"user": "admin", "password": PASSWORD, "next": target})
        assert response.status_code == 302 and response.headers["Location"] == f"{PREFIX}/", repr(target)
    # A NUL ends the password for crypt(3): refused, not cut short.
    assert ui.sign_in(PASSWORD + "\0whatever").status_code == 401


def test_a_site_file_that_is_not_utf8_is_refused_at_its_line(ui: UI) -> None:
    import io

    ui.sign_in()
    raw = b"# M\xfcller's site\n" + EXAMPLE.encode()
    data = {"csrf": ui.csrf(), "upload": (io.BytesIO(raw), "site.yaml")}
    response = ui.client.post(f"{PREFIX}/config/check", data=data, content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'data-line="1" role="alert">line 1: not UTF-8 text' in page


def test_every_problem_is_shown_even_past_the_last_line(ui: UI) -> None:
    import io

    ui.sign_in()
    broken, line = broken_site()
    for raw in (b"services: [", broken.encode().replace(b"\n", b"\r")):
        data = {"csrf": ui.csrf(), "upload": (io.BytesIO(raw), "site.yaml")}
        page = ui.client.post(f"{PREFIX}/config/check", data=data, content_type="multipart/form-data").get_data(
            as_text=True
        )
        count = int(re.search(r"The site file is not valid: (\d+) problem", page).group(1))  # type: ignore[union-attr]
        assert len(re.findall(r'class="problem" data-line="\d+"', page)) == count, page
    assert f'data-line="{line}" role="alert">line {line}: services.' in page  # CR line ends count as lines


def test_a_diff_keeps_its_lines(ui: UI) -> None:
    ui.sign_in()
    page = ui.client.post(f"{PREFIX}/config/check", data={"csrf": ui.csrf(), "site": EXAMPLE}).get_data(as_text=True)
    diff = page.split('<pre class="diff">')[1].split("</pre>")[0]
    assert diff.count("\n") == len(EXAMPLE.splitlines()) + 3  # ---, +++ and @@ lines


def test_certificates_browsers_cannot_use_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    files = tls.TLSFiles(tmp_path / "tls")
    ours = tls.ensure(files)
    for key, reason in (
        (rsa.generate_private_key(65537, 1024), "an RSA key of 1024 bits; 2048 or more are needed"),
        (ec.generate_private_key(ec.SECP256K1()), "an EC key on secp256k1; browsers need P-256 or P-384"),
        (ed25519.Ed25519PrivateKey.generate(), "an Ed25519 key; browsers need RSA"),
    ):
        with pytest.raises(tls.InputInvalid, match=reason):
            tls.install(pem_pair(key), files)
    import datetime

    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=2)
    with pytest.raises(tls.InputInvalid, match="the certificate is valid only from"):
        tls.install(pem_pair(ec.generate_private_key(ec.SECP256R1()), not_before=later), files)
    assert tls.fingerprint(files.cert.read_bytes()) == ours
    assert tls.install(pem_pair(rsa.generate_private_key(65537, 2048)), files) != ours


def pem_pair(key: Any, not_before: Any = None) -> bytes:
    """A private key and a self-signed certificate for it, as one PEM."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lb")])
    start = not_before or datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    algorithm = None if type(key).__name__.startswith("Ed") else hashes.SHA256()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=30))
        .sign(key, algorithm)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return bytes(key_pem + cert.public_bytes(serialization.Encoding.PEM))


def test_no_reboot_while_an_update_is_written(ui: UI) -> None:
    ui.sign_in()
    token = ui.csrf()
    ui.state.update.state = "running"
    ui.client.post(f"{PREFIX}/update/reboot", data={"csrf": token, "confirm": "yes"})
    assert "an update is being written" in ui.client.get(f"{PREFIX}/update").get_data(as_text=True)
    ui.state.update.state = "installed"
    page = ui.client.post(f"{PREFIX}/update/reboot", data={"csrf": token}).get_data(as_text=True)
    assert "Reboot now?" in page and 'href="/lbadmin/update">Cancel' in page


def test_a_password_locked_at_the_console_locks_the_web_ui(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """passwd -l puts '!' before the hash: the kept hash follows (the web UI refuses it, the next
    boot keeps the lock); the image's own '*' never replaces a kept hash."""
    from lbctl.boot import credentials

    shadow, kept = tmp_path / "shadow", tmp_path / "root.password-hash"
    monkeypatch.setattr(credentials, "SHADOW", shadow)
    monkeypatch.setattr(credentials, "HASH_FILE", kept)
    hashed = crypt_hash(PASSWORD).strip()
    for field, expected in ((hashed, hashed), ("!" + hashed, "!" + hashed), ("*", "!" + hashed), ("", "!" + hashed)):
        shadow.write_text(f"root:{field}:20000:0:99999:7:::\n")
        credentials.save()
        assert kept.read_text().strip() == expected, field
    assert not auth.PasswordFile(kept).check(PASSWORD)
    shadow.write_text("root:*:20000:0:99999:7:::\n")
    (tmp_path / "fresh").mkdir()
    monkeypatch.setattr(credentials, "HASH_FILE", tmp_path / "fresh" / "hash")
    credentials.save()  # a lock with nothing kept keeps nothing
    assert not (tmp_path / "fresh" / "hash").exists()
