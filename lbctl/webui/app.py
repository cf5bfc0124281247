"""The web UI's handlers: one per page and per action, each a thin layer over lbctl's functions.

    GET  /lbadmin/                      System Overview (?fragment=1: the live part only)
    GET  /lbadmin/api/status            the overview as JSON: `lbctl status --json`, the same model
    POST /lbadmin/server                drain | halt | online a real server (drain, halt confirmed)
    POST /lbadmin/cluster/<move>        takeover | standby (confirmed)
    GET  /lbadmin/config                the applied site, the generations, a diff of any two
    POST /lbadmin/config/check          validate an edited or uploaded site (errors at their line)
    POST /lbadmin/config/apply          `lbctl apply` of the checked site (removals confirmed)
    POST /lbadmin/config/rollback       `lbctl rollback` (confirmed)
    GET  /lbadmin/update                Software Update: the slots, the last update, the upload
    POST /lbadmin/update                upload archive + checksum; `lbctl update apply` runs
    POST /lbadmin/update/reboot         reboot into the new version (confirmed)
    POST /lbadmin/certificate           replace the web UI's certificate with the site's own
    GET  /lbadmin/logs                  journal lines of HAProxy, heartbeat, provisioning, the UI
    GET  /lbadmin/login, POST ...       sign-in; POST /lbadmin/logout signs out
    GET  /metrics                       the appliance gauges for Prometheus (no sign-in)

Every POST needs a signed-in session and its CSRF token. An action that moves traffic answers
its first POST with a confirmation page (plain HTML, no script needed), whose button posts again
with confirm=yes. Errors are the same sentences `lbctl` prints.
"""

from __future__ import annotations

import difflib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from flask import Flask, Response, abort, g, jsonify, redirect, render_template, request, url_for
from werkzeug.utils import secure_filename
from werkzeug.wrappers import Response as BaseResponse

from .. import actions
from ..appliance import DATA_DIR, TEMPLATES_DIR, Paths
from ..inputs import InputInvalid, format_path
from ..status import SERVER_STATES, collect_status, duration
from . import auth, journal, metrics, tls

log = logging.getLogger("lbctl.webui")

PREFIX = "/lbadmin"
WEBUI_DIR = DATA_DIR / "webui"
MAX_FORM_BYTES = 1 << 20  # every request but the update upload: a site file is a few KB
MAX_UPDATE_BYTES = 4 << 30  # the update archive (about 115 MB today)
REFRESH_SECONDS = 5  # the overview's live refresh
SLOTS_CACHE_SECONDS = 30  # the update slots change only by an update; reading the GPT costs ms

# Server actions: which need a confirmation (they move clients away), and which a state offers.
CONFIRM_SERVER = {
    "drain": "New clients go to the other servers; connections open now, and clients persistent to it, continue.",
    "halt": "The server is taken out of service now: its open connections are closed and every client "
    "goes to the other servers.",
}
OFFERED = {"UP": ("drain", "halt"), "DOWN": ("drain", "halt"), "DRAIN": ("online", "halt"), "MAINT": ("online",)}


@dataclass(frozen=True)
class WebSettings:
    """Where the web UI reads and writes; the appliance's own layout unless moved for tests."""

    paths: Paths
    password: auth.PasswordFile
    upload_dir: Path
    tls: tls.TLSFiles
    reboot: tuple[str, ...] = ("systemctl", "reboot")

    @classmethod
    def from_env(cls) -> WebSettings:
        from ..boot.credentials import HASH_FILE

        return cls(
            paths=Paths.from_env(),
            password=auth.PasswordFile(Path(os.environ.get("LB_WEBUI_PASSWORD_FILE") or HASH_FILE)),
            upload_dir=WEBUI_DIR / "upload",
            tls=tls.TLSFiles(),
            # The tests replace the reboot with a command that records it.
            reboot=tuple((os.environ.get("LB_WEBUI_REBOOT_COMMAND") or "systemctl reboot").split()),
        )


@dataclass
class UpdateJob:
    """The one update the web UI runs at a time (lbctl.update.apply takes a lock of its own too)."""

    state: str = "idle"  # idle, running, installed, refused, failed
    archive: str = ""
    lines: list[str] = field(default_factory=list)
    message: str = ""
    version: str = ""
    slot: str = ""
    started: float = 0.0
    finished: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class WebState:
    settings: WebSettings
    sessions: auth.Sessions = field(default_factory=auth.Sessions)
    failures: auth.FailureLimit = field(default_factory=auth.FailureLimit)
    update: UpdateJob = field(default_factory=UpdateJob)
    slots: tuple[float, Any] = (0.0, None)  # (when read, UpdateStatus or error text)


def create_app(settings: WebSettings | None = None) -> Flask:
    """The Flask application (gunicorn serves `lbctl.webui.app:create_app()`)."""
    app = Flask(
        __name__,
        template_folder=str(TEMPLATES_DIR / "webui"),
        static_folder="static",
        static_url_path=f"{PREFIX}/static",
    )
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_FORM_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_FORM_BYTES,  # the editor's text field (Werkzeug's default is 500 kB)
        SEND_FILE_MAX_AGE_DEFAULT=3600,
        TEMPLATES_AUTO_RELOAD=False,
    )
    state = WebState(settings or WebSettings.from_env())
    app.extensions["lbadmin"] = state
    app.jinja_env.globals.update(
        PREFIX=PREFIX, duration=duration, SERVER_STATES=SERVER_STATES, OFFERED=OFFERED, now=time.time
    )
    app.jinja_env.filters.update(
        strftime=lambda t: time.strftime("%H:%M:%S UTC", time.gmtime(t)),
        problem_text=lambda p: (f"{format_path(p.path)}: " if p.path else "") + p.reason,
    )
    # A name a template uses but no handler gives is an error, not an empty string.
    app.jinja_env.undefined = jinja2.StrictUndefined
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    _routes(app, state)
    return app


# --- the pieces every handler shares ----------------------------------------------------------


def client_address() -> str:
    return request.remote_addr or "unknown"


def page(template: str, status: int = 200, **values: Any) -> BaseResponse:
    session: auth.Session | None = g.get("session")
    notices = g.pop("notices", None) or []
    body = render_template(template, csrf=session.csrf if session else "", notices=notices, **values)
    return Response(body, status, mimetype="text/html")


def notice(text: str, kind: str = "ok") -> None:
    """A message (kind ok, note or error) for the next page this session sees, after the
    redirect that follows a POST."""
    session: auth.Session | None = g.get("session")
    if session is not None:
        session.notices.append((kind, text))


def take_notices(session: auth.Session) -> list[tuple[str, str]]:
    pending, session.notices = session.notices, []
    return pending


def confirm_page(
    title: str, explain: str, action: str, fields: dict[str, str | list[str]], button: str, back: str = ""
) -> BaseResponse:
    """The page that asks once more; Cancel goes `back` (default: the overview)."""
    return page(
        "confirm.html",
        title=title,
        explain=explain,
        action=action,
        fields=fields,
        button=button,
        back=back or url_for("overview"),
    )


def confirmed() -> bool:
    return request.form.get("confirm") == "yes"


def same_origin() -> bool:
    """A POST must come from this UI: an Origin header, when the browser sends one, names us
    (scheme, host and port; RFC 6454)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return parts.scheme == request.scheme and parts.netloc == request.host


def safe_next(target: str) -> str:
    """Where to go after signing in: a page of this UI (a path, no host, no control characters,
    not the sign-out), else the overview."""
    if (
        not target.startswith(f"{PREFIX}/")
        or target.startswith("//")
        or any(ord(c) < 32 or ord(c) == 127 for c in target)
        or target.split("?")[0] == f"{PREFIX}/logout"
    ):
        return f"{PREFIX}/"
    return target


def security_headers(response: Response) -> BaseResponse:
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"
    if not request.path.startswith(f"{PREFIX}/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


# --- the routes -------------------------------------------------------------------------------


def _routes(app: Flask, state: WebState) -> None:  # noqa: C901 - one place lists every route
    settings = state.settings
    paths = settings.paths
    open_endpoints = {"login", "static", "metrics_page", "root"}

    @app.before_request
    def authenticate() -> BaseResponse | None:
        if request.endpoint == "update_upload":
            request.max_content_length = MAX_UPDATE_BYTES
        if request.endpoint in open_endpoints or request.endpoint is None:
            return None
        # The overview's own refresh and API reads are not the user's: they neither keep the
        # session alive nor take the messages meant for the next page.
        background = request.path.startswith(f"{PREFIX}/api/") or bool(request.args.get("fragment"))
        cookie = request.cookies.get(auth.SESSION_COOKIE)
        session = state.sessions.get(cookie, settings.password.fingerprint(), touch=not background)
        if session is None:
            if background:
                response = Response("signed out\n", 401, mimetype="text/plain")
                response.headers["WWW-Authenticate"] = 'Form realm="lbadmin"'
                return response
            target = request.full_path if request.method == "GET" else f"{PREFIX}/"
            return redirect(url_for("login", next=target.rstrip("?")))
        g.session = session
        g.notices = [] if background else take_notices(session)
        if request.method == "POST":
            token = request.headers.get("X-CSRF-Token") or request.form.get("csrf")
            if not same_origin() or not auth.csrf_ok(session, token):
                log.warning(
                    "refused %s %s from %s: no valid CSRF token", request.method, request.path, client_address()
                )
                return Response(
                    "refused: this form is stale or came from another site; reload the page\n",
                    403,
                    mimetype="text/plain",
                )
        return None

    app.after_request(security_headers)

    @app.errorhandler(413)
    def too_large(_exc: Exception) -> BaseResponse:
        return Response("the upload is too large\n", 413, mimetype="text/plain")

    @app.get("/")
    def root() -> BaseResponse:
        return redirect(f"{PREFIX}/")

    # --- sign-in ------------------------------------------------------------------------------

    @app.route(f"{PREFIX}/login", methods=["GET", "POST"])
    def login() -> BaseResponse:
        address = client_address()
        has_password = settings.password.read() is not None
        target = safe_next(request.values.get("next", ""))
        if request.method == "GET":
            return page("login.html", has_password=has_password, next=target, error="")
        if not same_origin():
            return Response("refused: the sign-in form came from another site\n", 403, mimetype="text/plain")
        wait, count = state.failures.begin(address)
        if wait:
            log.warning("sign-in from %s refused: too many failures, %d s to wait", address, wait)
            response = page(
                "login.html",
                429,
                has_password=has_password,
                next=target,
                error=f"Too many failed sign-ins from your address. Try again in {wait} seconds.",
            )
            response.headers["Retry-After"] = str(wait)
            return response
        user = request.form.get("user", "")
        password = request.form.get("password", "")
        if user == auth.ADMIN_USER and settings.password.check(password):
            state.failures.succeeded(address)
            session = state.sessions.create(address, settings.password.fingerprint())
            log.info("sign-in: %s from %s", user, address)
            response = redirect(target)
            response.set_cookie(
                auth.SESSION_COOKIE, session.id, secure=True, httponly=True, samesite="Strict", path="/"
            )
            return response
        log.warning(
            "sign-in failed from %s as %r (%d of %d allowed in %d s)",
            address,
            user[:64],
            count,
            state.failures.allowed,
            int(state.failures.window),
        )
        error = "Wrong user name or password."
        if not has_password:
            error = "No admin password is set on this appliance; set one at the console (passwd)."
        response = page("login.html", 401, has_password=has_password, next=target, error=error)
        response.headers["WWW-Authenticate"] = 'Form realm="lbadmin"'  # RFC 9110 15.5.2: a 401 names a scheme
        return response

    @app.post(f"{PREFIX}/logout")
    def logout() -> BaseResponse:
        state.sessions.end(g.session.id)
        log.info("sign-out from %s", client_address())
        response = redirect(url_for("login"))
        response.delete_cookie(auth.SESSION_COOKIE, secure=True, httponly=True, samesite="Strict", path="/")
        return response

    # --- System Overview ----------------------------------------------------------------------

    def slots() -> Any:
        when, value = state.slots
        if value is None or time.monotonic() - when > SLOTS_CACHE_SECONDS:
            from ..update import report
            from ..update.disk import DiskError

            try:
                value = report.collect()
            except (DiskError, OSError) as exc:
                value = str(exc)
            state.slots = (time.monotonic(), value)
        return value

    def lockdown() -> Any:
        from ..firewall.settings import load_settings

        try:
            return load_settings()
        except (InputInvalid, OSError) as exc:
            return str(exc)

    def overview_values() -> dict[str, Any]:
        st = collect_status(paths)
        return {"st": st, "slots": slots(), "firewall": lockdown(), "refresh": REFRESH_SECONDS, "now": time.time()}

    @app.get(f"{PREFIX}/")
    def overview() -> BaseResponse:
        values = overview_values()
        if request.args.get("fragment"):
            return page("overview_live.html", **values)
        return page("overview.html", **values)

    @app.get(f"{PREFIX}/api/status")
    def api_status() -> BaseResponse:
        return jsonify(collect_status(paths).to_json())

    @app.post(f"{PREFIX}/server")
    def server_action() -> BaseResponse:
        action, _, rest = request.form.get("target", "").partition("/")
        service, _, label = rest.partition("/")
        if action not in actions.SERVER_ACTIONS or not service or not label:
            abort(400)
        if action in CONFIRM_SERVER and not confirmed():
            from ..status import read_services

            configured = {
                (svc["name"], srv["label"])
                for svc in (read_services(paths) or {"services": []})["services"]
                for srv in svc["servers"]
            }
            if (service, label) not in configured:
                notice(f"{service}/{label}: no such real server in the applied configuration", "error")
                return redirect(f"{PREFIX}/")
            return confirm_page(
                f"{action.capitalize()} {service}/{label}?",
                CONFIRM_SERVER[action],
                url_for("server_action"),
                {"target": f"{action}/{service}/{label}"},
                f"{action.capitalize()} {label}",
            )
        try:
            done = actions.server_action(paths, action, service, label)
        except actions.ActionError as exc:
            notice(str(exc), "error")
        else:
            log.info("%s (from %s)", done, client_address())
            notice(done)
        return redirect(f"{PREFIX}/#service-{service}")

    @app.post(f"{PREFIX}/cluster/<move>")
    def cluster_move(move: str) -> BaseResponse:
        if move not in ("takeover", "standby"):
            abort(404)
        if not confirmed():
            explain = (
                "This node takes the floating IPs (every VIP) from the peer: clients' connections to the VIPs "
                "move here and are re-established."
                if move == "takeover"
                else "This node hands the floating IPs (every VIP) to the peer: clients' connections move there."
            )
            return confirm_page(
                f"{'Take over' if move == 'takeover' else 'Stand by'}?",
                explain,
                url_for("cluster_move", move=move),
                {},
                "Take over" if move == "takeover" else "Stand by",
            )
        try:
            notice(actions.cluster_move(move))
            log.info("cluster %s (from %s)", move, client_address())
        except actions.ActionError as exc:
            notice(str(exc), "error")
        return redirect(f"{PREFIX}/")

    # --- configuration ------------------------------------------------------------------------

    def config_values(**extra: Any) -> dict[str, Any]:
        from ..config import generations

        current = generations.target_of(paths.current)
        good = generations.target_of(paths.last_good)
        listed = []
        for gen in reversed(generations.numbered(paths)):
            listed.append(
                {
                    "name": gen.name,
                    "current": current is not None and gen.name == current.name,
                    "last_good": good is not None and gen.name == good.name,
                    "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(gen.stat().st_mtime)),
                    "site": (gen / "site.yaml").exists(),
                }
            )
        text = site_text(current)
        values: dict[str, Any] = {
            "generations": listed,
            "current": current.name if current else None,
            "last_good": good.name if good else None,
            "site_text": text or "",
            "edit_text": text or "",
            "problems": [],
            "by_line": {},
            "diff": None,
            "error": "",
            "a": "",
            "b": "",
        }
        values.update(extra)
        return values

    def site_text(generation: Path | None) -> str | None:
        kept = generation / "site.yaml" if generation else None
        return kept.read_text() if kept and kept.exists() else None

    def generation_dir(name: str) -> Path | None:
        from ..config import generations

        if not (name.isascii() and name.isdigit() and len(name) <= 8):
            return None
        path = generations.generations_dir(paths) / name
        return path if path.is_dir() else None

    @app.get(f"{PREFIX}/config")
    def config() -> BaseResponse:
        diff = None
        a, b = request.args.get("a", ""), request.args.get("b", "")
        if a and b:
            old, new = generation_dir(a), generation_dir(b)
            if old is None or new is None:
                g.notices = [*g.get("notices", []), ("error", f"no such generation: {a if old is None else b}")]
            else:
                diff = unified(site_text(old) or "", site_text(new) or "", f"generation {a}", f"generation {b}")
        return page("config.html", **config_values(diff=diff, a=a, b=b))

    def submitted_site() -> tuple[str, bytes]:
        """The uploaded file (it wins) or the edited text, line ends made '\n': as text to show,
        and as the bytes the input engine reads (it refuses what is not UTF-8, at its line)."""
        upload = request.files.get("upload")
        if upload is None or not upload.filename:
            text = normal_lines(request.form.get("site", ""))
            return text, text.encode("utf-8")
        raw = upload.read(MAX_FORM_BYTES + 1).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        return raw.decode("utf-8", "replace"), raw

    def invalid(text: str, exc: InputInvalid, status: int = 422) -> BaseResponse:
        """The editor again, each problem below its line (0: problems of the whole file, and of
        a line past the end, such as an unclosed bracket)."""
        last = len(text.split("\n"))
        by_line: dict[int, list[Any]] = {}
        for problem in exc.problems:
            by_line.setdefault(problem.line if problem.line and problem.line <= last else 0, []).append(problem)
        return page("config.html", status, **config_values(edit_text=text, problems=exc.problems, by_line=by_line))

    @app.post(f"{PREFIX}/config/check")
    def config_check() -> BaseResponse:
        text, raw = submitted_site()
        try:
            site = actions.parse_site(raw)
        except InputInvalid as exc:
            return invalid(text, exc)
        from ..config import generations
        from ..config.apply import dropped_services

        current = site_text(generations.target_of(paths.current))
        return page(
            "config_confirm.html",
            text=text,
            services=[s.name for s in site.services],
            removed=dropped_services(paths, site),
            diff=unified(current or "", text, "applied", "new"),
        )

    @app.post(f"{PREFIX}/config/apply")
    def config_apply() -> BaseResponse:
        text = normal_lines(request.form.get("site", ""))
        removals = request.form.getlist("remove")
        try:
            change = actions.apply_text(paths, text, removals)
        except InputInvalid as exc:
            return invalid(text, exc)
        except actions.ActionError as exc:
            return page("config.html", 409, **config_values(edit_text=text, error=str(exc)))
        outcome = change.outcome
        if outcome.changed:
            done = f"applied generation {outcome.generation.name}" + (
                "; HAProxy reloaded seamlessly" if outcome.reloaded else ""
            )
        else:
            done = f"configuration unchanged (generation {outcome.generation.name}); nothing to reload"
        log.info("%s (from %s)", done, client_address())
        notice(done)
        for note in [*outcome.notes, *([f"replicated: {change.replicated}"] if change.replicated else [])]:
            notice(note, "note")
        if change.replication_error:
            notice(change.replication_error, "error")
        return redirect(url_for("config"))

    @app.post(f"{PREFIX}/config/rollback")
    def config_rollback() -> BaseResponse:
        if not confirmed():
            return confirm_page(
                "Roll back the configuration?",
                "HAProxy reloads the last-good configuration (the one before the last apply); "
                "persistence tables and open connections survive the reload.",
                url_for("config_rollback"),
                {},
                "Roll back",
                back=url_for("config"),
            )
        try:
            change = actions.rollback(paths)
        except actions.ActionError as exc:
            notice(str(exc), "error")
        else:
            log.info("rolled back to generation %s (from %s)", change.outcome.generation.name, client_address())
            notice(f"rolled back to generation {change.outcome.generation.name}")
            if change.replication_error:
                notice(change.replication_error, "error")
        return redirect(url_for("config"))

    # --- Software Update ----------------------------------------------------------------------

    @app.get(f"{PREFIX}/update")
    def update() -> BaseResponse:
        job = state.update
        tls_fingerprint = None
        if settings.tls.cert.exists():
            tls_fingerprint = tls.fingerprint(settings.tls.cert.read_bytes())
        return page("update.html", job=job, slots=slots(), tls_fingerprint=tls_fingerprint)

    @app.post(f"{PREFIX}/update")
    def update_upload() -> BaseResponse:
        job = state.update
        archive = request.files.get("archive")
        checksum = request.files.get("checksum")
        if archive is None or not archive.filename or checksum is None or not checksum.filename:
            notice("choose both files: the update archive (.tar) and its checksum file (.sha256)", "error")
            return redirect(url_for("update"))
        with job.lock:
            if job.state == "running":
                notice("an update is running already", "error")
                return redirect(url_for("update"))
            job.state, job.lines, job.message, job.version, job.slot = "running", [], "", "", ""
            job.started, job.finished = time.time(), 0.0
        name = secure_filename(archive.filename) or "update.tar"
        job.archive = name
        target = settings.upload_dir
        archive_path, checksum_path = target / name, target / f"{name}.sha256"
        try:
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True, mode=0o700)
            archive.save(archive_path)
            checksum.save(checksum_path)
        except OSError as exc:
            shutil.rmtree(target, ignore_errors=True)
            job.state, job.message, job.finished = "failed", f"the upload could not be stored: {exc}", time.time()
            log.warning("update: %s", job.message)
            return redirect(url_for("update"))
        log.info("update: %s uploaded from %s (%d bytes)", name, client_address(), archive_path.stat().st_size)
        state.slots = (0.0, None)
        threading.Thread(target=run_update, args=(job, archive_path, checksum_path), daemon=True).start()
        return redirect(url_for("update"))

    def run_update(job: UpdateJob, archive_path: Path, checksum_path: Path) -> None:
        from ..update import apply as upd

        def heard(line: str) -> None:
            # "[3/7] write slot B ... : done in 4.1 s" takes the place of its "[3/7] write slot B ...".
            if job.lines and job.lines[-1].endswith(" ...") and line.startswith(job.lines[-1][:-4] + ": "):
                job.lines[-1] = line
            else:
                job.lines.append(line)
            log.info("update: %s", line)

        outcome, message, version, slot = "failed", "", "", ""
        try:
            plan = upd.apply(archive_path, checksum_path, progress=heard)
        except upd.UpdateRefused as exc:
            outcome, message = "refused", f"update refused, nothing was written: {exc}"
        except upd.UpdateFailed as exc:
            message = f"update failed: {exc}"
        except Exception as exc:  # the page must say it ended, whatever happened
            message = f"update failed: {type(exc).__name__}: {exc}"
        else:
            outcome, version, slot = "installed", plan.version, plan.target.name
            message = f"{plan.version} is installed in slot {plan.target.name}; it starts at the next reboot"
        # The upload goes before the job says it ended: a next upload may start only then.
        shutil.rmtree(archive_path.parent, ignore_errors=True)
        state.slots = (0.0, None)
        with job.lock:
            job.message, job.version, job.slot, job.finished = message, version, slot, time.time()
            job.state = outcome
        log.info("update: %s", message)

    @app.post(f"{PREFIX}/update/reboot")
    def update_reboot() -> BaseResponse:
        if state.update.state == "running":
            notice("an update is being written: reboot once it has ended", "error")
            return redirect(url_for("update"))
        if not confirmed():
            from ..cli import ha_warning

            warning = ha_warning(paths)
            return confirm_page(
                "Reboot now?",
                "The appliance restarts into the new version; its services are away for about a minute."
                + (f" {warning}" if warning else ""),
                url_for("update_reboot"),
                {},
                "Reboot",
                back=url_for("update"),
            )
        log.warning("reboot asked from %s", client_address())
        import subprocess

        subprocess.Popen(list(settings.reboot), start_new_session=True)
        return page("rebooting.html")

    @app.post(f"{PREFIX}/certificate")
    def certificate() -> BaseResponse:
        upload = request.files.get("pem")
        if state.update.state == "running":
            # Installing it restarts the worker, which would stop the update half way.
            notice("an update is running: install the certificate once it has ended", "error")
            return redirect(url_for("update"))
        if upload is None or not upload.filename:
            notice("choose the PEM file (private key and certificate chain)", "error")
            return redirect(url_for("update"))
        try:
            made = tls.install(upload.read(tls.MAX_PEM_BYTES + 1), settings.tls)
        except InputInvalid as exc:
            notice(f"certificate refused: {exc}", "error")
            return redirect(url_for("update"))
        log.info("certificate replaced from %s: SHA-256 %s", client_address(), made)
        notice(f"certificate installed (SHA-256 {made}); new connections get it")
        return redirect(url_for("update"))

    # --- logs ---------------------------------------------------------------------------------

    @app.get(f"{PREFIX}/logs")
    def logs() -> BaseResponse:
        source = request.args.get("source", "haproxy")
        priority = request.args.get("priority", "all")
        text = request.args.get("text", "")[:200]
        given = request.args.get("lines", "200")
        lines = next((n for n in journal.LINE_CHOICES if str(n) == given), 0)
        if source not in journal.SOURCES or priority not in journal.PRIORITIES or lines not in journal.LINE_CHOICES:
            abort(400)
        error = ""
        entries: list[journal.LogLine] = []
        try:
            entries = journal.read(source, lines, text, priority)
        except journal.JournalError as exc:
            error = str(exc)
        return page(
            "logs.html",
            sources=journal.SOURCES,
            priorities=journal.PRIORITIES,
            line_choices=journal.LINE_CHOICES,
            source=source,
            priority=priority,
            text=text,
            lines=lines,
            entries=entries,
            error=error,
        )

    # --- metrics ------------------------------------------------------------------------------

    @app.get("/metrics")
    def metrics_page() -> BaseResponse:
        st = collect_status(paths)
        info = slots()
        booted = next((s.name for s in info.slots if s.booted), None) if not isinstance(info, str) else None
        firewall = lockdown()
        locked = None if isinstance(firewall, str) else firewall.locked_down
        return Response(metrics.render(metrics.gauges(st, booted, locked)), content_type=metrics.CONTENT_TYPE)


def normal_lines(text: str) -> str:
    """'\r\n' and '\r' line ends as '\n' (browsers send a text area's lines with '\r\n'), so
    that the problems' line numbers are the lines shown."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def unified(old: str, new: str, old_name: str, new_name: str) -> list[str]:
    """A unified diff as lines (no trailing newlines); empty when the texts are the same."""
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), old_name, new_name, n=3
        )
    ]
