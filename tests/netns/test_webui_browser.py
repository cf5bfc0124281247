"""The web UI in a real browser (Debian's chromium, driven by chromium-driver through Selenium),
served by gunicorn as lb-webui.service serves it, over the lab's HAProxy with its real servers.

It signs in, sees every service and real server as HAProxy reports them, drains a server (and
HAProxy agrees), sees a change made with lbctl arrive without a reload, uploads a broken site
file and sees the error at its line, uploads a good one and sees the new generation, and
installs an offline update (against a disk image file, tests/lbctl/update_lab.py). The
screenshots in docs/images/ are taken here.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from lbctl.config import haproxy as runtime
from lbctl.webui import tls
from tests.lbctl.update_lab import Lab as UpdateLab
from tests.netns.appliance import Appliance
from tests.netns.netlab import wait_until
from tests.netns.sites import full_site

pytestmark = pytest.mark.netns

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
PASSWORD = "pacs-admin-2026"
CHROMEDRIVER = "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WebUI:
    url: str
    port: int
    process: subprocess.Popen
    log: Path
    env: dict[str, str]
    update_lab: UpdateLab
    rebooted: Path


@pytest.fixture
def webui(running: Appliance, tmp_path: Path) -> Iterator[WebUI]:
    """gunicorn with lbctl.webui.server's settings, on a loopback port, over `running`."""
    (tmp_path / "update").mkdir()
    lab = UpdateLab(tmp_path / "update")
    hash_file = tmp_path / "admin.password-hash"
    hash_file.write_text(
        subprocess.run(["openssl", "passwd", "-6", PASSWORD], capture_output=True, text=True, check=True).stdout
    )
    port = free_port()
    rebooted = tmp_path / "rebooted"
    env = {
        **running.env(),
        **lab.env(),
        "LB_WEBUI_BIND": f"127.0.0.1:{port}",
        "LB_WEBUI_PASSWORD_FILE": str(hash_file),
        "LB_WEBUI_REBOOT_COMMAND": f"touch {rebooted}",
        "TMPDIR": str(tmp_path),
    }
    # lb-webui.service's ExecStartPre, then its ExecStart.
    subprocess.run([sys.executable, "-m", "lbctl.webui.tls", "ensure"], env=env, check=True, capture_output=True)
    log = tmp_path / "webui.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "python:lbctl.webui.server", "lbctl.webui.app:create_app()"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: _listening(port) or process.poll() is not None, 30, "gunicorn to listen")
        assert process.poll() is None, log.read_text()
        yield WebUI(f"https://127.0.0.1:{port}/lbadmin/", port, process, log, env, lab, rebooted)
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(flag)
    options.accept_insecure_certs = True  # the appliance's own self-signed certificate
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def find(driver: WebDriver, css: str, timeout: float = 15) -> WebElement:
    return wait_until(lambda: (found := driver.find_elements(By.CSS_SELECTOR, css)) and found[0], timeout, css)


def sign_in(driver: WebDriver, ui: WebUI) -> None:
    driver.get(ui.url)
    assert "/lbadmin/login" in driver.current_url
    find(driver, "#password").send_keys(PASSWORD)
    find(driver, "form.login button").click()
    find(driver, "#live")
    assert driver.title.startswith("System Overview")


def screenshot(driver: WebDriver, name: str) -> None:
    """The whole page, as wide as a laptop's browser window."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 120, 4000))
    driver.execute_script("window.scrollTo(0, 0)")
    DOCS_IMAGES.mkdir(exist_ok=True)
    driver.save_screenshot(str(DOCS_IMAGES / name))
    driver.set_window_size(1280, 900)


def row(driver: WebDriver, service: str, label: str) -> WebElement:
    return find(driver, f'tr[data-server="{service}/{label}"]')


def row_state(driver: WebDriver, service: str, label: str) -> str:
    return str(row(driver, service, label).find_element(By.CSS_SELECTOR, ".state").text)


def test_the_certificate_is_the_instances_own(webui: WebUI) -> None:
    served = ssl.get_server_certificate(("127.0.0.1", webui.port))
    kept = (Path(webui.env["LB_DATA_DIR"]) / "webui" / "tls" / "cert.pem").read_text()
    assert tls.fingerprint(served.encode()) == tls.fingerprint(kept.encode())


def test_overview_drain_and_site_upload(webui: WebUI, browser: WebDriver, running: Appliance, tmp_path: Path) -> None:
    sign_in(browser, webui)

    # Every service and real server, as `lbctl status --json` (the same model) has them.
    status = running.status()
    assert len(status["services"]) == 9
    for svc in status["services"]:
        body = find(browser, f"tbody#service-{svc['name']}")
        assert svc["vip"] in body.text
        for srv in svc["servers"]:
            assert row_state(browser, svc["name"], srv["label"]) == srv["state"] == "UP"
            assert srv["address"] in row(browser, svc["name"], srv["label"]).text
    assert "Healthy" in find(browser, ".summary").text
    assert "A single appliance" in find(browser, "#ha").text
    assert "no lockdown" in find(browser, "#lockdown").text

    # Drain DICOM/Server1: the button asks first, then HAProxy has it in DRAIN.
    find(browser, 'button[value="drain/DICOM/Server1"]').click()
    assert "Drain DICOM/Server1?" in find(browser, "h1").text
    find(browser, "button.danger").click()
    assert "DICOM/Server1: drain" in find(browser, ".notice.ok").text
    assert row_state(browser, "DICOM", "Server1") == "DRAIN"
    rows = {(r["pxname"], r["svname"]): r for r in runtime.show_stat(running.admin_socket)}
    assert rows[("DICOM", "Server1")]["status"] == "DRAIN"
    assert rows[("DICOM", "Server2")]["status"].startswith("UP")
    screenshot(browser, "webui-overview.png")

    # A change made elsewhere (lbctl on the console) arrives without reloading the page.
    marker = browser.execute_script("window.lbMarker = 1; return window.lbMarker")
    running.lbctl("server", "halt", "SQL", "Server2")
    wait_until(lambda: row_state(browser, "SQL", "Server2") == "MAINT", 20, "the live refresh to show MAINT")
    assert browser.execute_script("return window.lbMarker") == marker  # the same page, not reloaded
    running.lbctl("server", "online", "SQL", "Server2")

    # A broken site file: the error is shown at its line, and nothing is applied.
    site = full_site()
    site["services"]["LDAP"]["vip"] = "10.77.1.300"
    text = yaml.safe_dump(site, sort_keys=False)
    line = next(n for n, t in enumerate(text.splitlines(), 1) if "10.77.1.300" in t)
    broken = tmp_path / "broken.yaml"
    broken.write_text(text)
    browser.get(webui.url + "config")
    find(browser, "#upload").send_keys(str(broken))
    find(browser, "form[action$='/config/check'] button").click()
    problem = find(browser, f'td.problem[data-line="{line}"]')
    assert f"line {line}: services.LDAP.vip:" in problem.text and "10.77.1.300" in problem.text
    assert "10.77.1.300" in find(browser, f"tr#line-{line}").text
    assert running.status()["generation"] == "0001"

    # A good one: validated, its diff shown, applied on confirmation; the new generation runs.
    site = full_site()
    site["services"]["SQL"]["persistence_minutes"] = 45
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(site, sort_keys=False))
    find(browser, "#upload").send_keys(str(good))
    find(browser, "form[action$='/config/check'] button").click()
    assert "The site file is valid: 9 virtual services" in find(browser, "#valid").text
    assert "+    persistence_minutes: 45" in find(browser, "pre.diff").text
    find(browser, "button.danger").click()
    assert "applied generation 0002" in find(browser, ".notice.ok").text
    assert "current" in find(browser, "tr#gen-0002").text
    assert running.status()["generation"] == "0002"
    running.lab.sync_addresses(running.networkd_dir)
    assert "persistence_minutes: 45" in find(browser, "#current-site").text
    # The drain survived the reload, as it does for lbctl apply.
    assert running.server("DICOM", "Server1")["state"] == "DRAIN"
    # The difference between the two generations.
    browser.get(webui.url + "config?a=0001&b=0002")
    assert "+    persistence_minutes: 45" in find(browser, "pre.diff").text


def test_software_update_upload(webui: WebUI, browser: WebDriver) -> None:
    archive, checksum = webui.update_lab.archive("0.2.0")
    sign_in(browser, webui)
    browser.get(webui.url + "update")
    find(browser, "#archive").send_keys(str(archive))
    find(browser, "#checksum").send_keys(str(checksum))
    find(browser, "#update-form button").click()
    # The page refreshes itself (no script) until the update ended.
    job = wait_until(
        lambda: (
            (
                j := browser.find_elements(
                    By.CSS_SELECTOR, "#update-job.installed, #update-job.failed, #update-job.refused"
                )
            )
            and j[0]
        ),
        120,
        "the update to end",
    )
    assert "installed" in str(job.get_attribute("class")), job.text
    assert "0.2.0 is installed in slot B" in job.text
    steps = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "ol.progress li")]
    assert steps[0].startswith("[1/") and "verify the archive, its signature" in steps[0], steps
    assert any("install the UKI" in s and ": done in" in s for s in steps), steps
    assert "lbroot_0.2.0" in webui.update_lab.labels()
    screenshot(browser, "webui-update.png")
    # The reboot is offered, and asked for once more.
    find(browser, "#reboot").click()
    assert "Reboot now?" in find(browser, "h1").text
    find(browser, "button.danger").click()
    assert "Rebooting" in find(browser, "h1").text
    wait_until(webui.rebooted.exists, 10, "the reboot command")

    # A tampered archive is refused before anything is written.
    archive2, checksum2 = webui.update_lab.archive("0.3.0")
    before = webui.update_lab.snapshot()
    data = bytearray(archive2.read_bytes())
    data[len(data) // 2] ^= 1
    archive2.write_bytes(bytes(data))
    browser.get(webui.url + "update")
    find(browser, "#archive").send_keys(str(archive2))
    find(browser, "#checksum").send_keys(str(checksum2))
    find(browser, "#update-form button").click()
    job = wait_until(
        lambda: (j := browser.find_elements(By.CSS_SELECTOR, "#update-job.refused, #update-job.failed")) and j[0],
        60,
        "the refusal",
    )
    assert "update refused, nothing was written" in job.text and "checksum" in job.text
    assert webui.update_lab.snapshot() == before
    assert not (Path(webui.env["LB_DATA_DIR"]) / "webui" / "upload").exists()  # the uploads are gone
