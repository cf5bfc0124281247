"""Every protocol of the preset through the appliance, with real clients and real servers.

Each test proves three things for its protocol: the request reached exactly one real server, the
answer came back intact, and the real server saw the SNAT address (not the client's, not the
appliance's own server-side address) as the source.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import make_dicom_file
from tests.netns.appliance import Appliance
from tests.netns.backends import Backends
from tests.netns.clients import sql_server_name
from tests.netns.netlab import CLIENT_NET, LB_SERVER_SIDE, SNAT, VIP_DATA, VIP_DICOM, Lab
from tests.netns.sites import full_site


def stored_files(backends: Backends) -> dict[str, set[str]]:
    return {name: {p.name for p in s.dicom_dir.glob("*")} for name, s in backends.servers.items()}


def test_dicom_c_store_lands_on_one_real_server_from_the_snat_address(
    running: Appliance, backends: Backends, lab: Lab, tmp_path: Path
) -> None:
    tmp_path.chmod(0o755)
    uid = make_dicom_file(tmp_path / "ct.dcm")
    before = stored_files(backends)
    result = lab.exec("cl", ["/usr/bin/storescu", "-v", VIP_DICOM, "104", str(tmp_path / "ct.dcm")])
    assert "Received Store Response (Success)" in result.stdout + result.stderr
    new = {name: files - before[name] for name, files in stored_files(backends).items()}
    receivers = [name for name, files in new.items() if files]
    assert len(receivers) == 1, f"expected the object on exactly one real server, got {new}"
    assert any(uid in f for f in new[receivers[0]])
    log = backends.log(receivers[0], "dicom")
    assert f"Association Received: {SNAT}" in log
    assert f"Association Received: {CLIENT_NET}.1" not in log  # never the client's own address
    assert f"Association Received: {LB_SERVER_SIDE}" not in log  # nor the appliance's own


def test_dmwl_worklist_query_with_findscu(running: Appliance, lab: Lab) -> None:
    result = lab.exec(
        "cl",
        [
            "/usr/bin/findscu",
            "-v",
            "-W",
            "-aec",
            "WLSRV",
            "-k",
            "PatientName",
            "-k",
            "ScheduledProcedureStepSequence[0].Modality",
            VIP_DICOM,
            "8104",
        ],
    )
    output = result.stdout + result.stderr
    patients = re.findall(r"PN \[(S\d\^Patient)\]", output)
    assert len(patients) == 1, output
    assert "Received Final Find Response (Success)" in output


def test_dicom_echo_check_is_a_real_verification(appliance: Appliance, backends: Backends) -> None:
    """dicom-echo on DMWL: UP with the worklist SCP's AE title, DOWN with a title it rejects."""
    site = full_site()
    site["services"]["DMWL"].update(check="dicom-echo", called_ae_title="WLSRV", check_interval_seconds=2)
    appliance.apply(site)
    appliance.start()
    for label in ("Server1", "Server2"):
        appliance.wait_check("DMWL", label, "UP", "L7OK")
    site["services"]["DMWL"]["called_ae_title"] = "NOT-A-WL-AE"
    appliance.apply(site)
    for label in ("Server1", "Server2"):
        # L7RSP: the server answered, but with an A-ASSOCIATE-RJ instead of the expected AC.
        server = appliance.wait_check("DMWL", label, "DOWN", "L7")
        assert "A-ASSOCIATE-AC" in server["last_check"]["detail"] + str(server), server
    assert appliance.status()["healthy"], "DOWN real servers must not make the appliance unhealthy"


def test_ldap_search_through_the_vip(running: Appliance, backends: Backends, lab: Lab) -> None:
    result = lab.exec(
        "cl", ["ldapsearch", "-x", "-H", f"ldap://{VIP_DATA}:3890", "-b", "", "-s", "base", "namingContexts"]
    )
    contexts = re.findall(r"namingContexts: dc=(s\d),dc=test", result.stdout)
    assert len(contexts) == 1, result.stdout
    assert f"ACCEPT from IP={SNAT}:" in backends.log(contexts[0], "ldap")
    assert running.server("LDAP", "Server1")["last_check"]["status"] == "L7OK"  # the ldap bind check


def test_ldaps_passes_through_to_the_real_server(running: Appliance, backends: Backends, lab: Lab) -> None:
    result = lab.exec(
        "cl",
        ["ldapsearch", "-x", "-H", f"ldaps://{VIP_DATA}:6360", "-b", "", "-s", "base", "namingContexts"],
        env={"LDAPTLS_CACERT": str(backends.certificates.ca), "LDAPTLS_REQCERT": "demand", "PATH": "/usr/bin:/bin"},
    )
    assert re.search(r"namingContexts: dc=s\d,dc=test", result.stdout), result.stdout + result.stderr


def test_tls_passes_through_unmodified(running: Appliance, backends: Backends, lab: Lab) -> None:
    """openssl s_client to DICOM-Secure gets the real server's own certificate, verified against
    the test CA, and the server's answer: the appliance did not terminate or alter TLS."""
    script = (
        f"(echo hello-through-the-lb; sleep 1) | openssl s_client -connect {VIP_DICOM}:2762 "
        f"-CAfile {backends.certificates.ca} -verify_ip {VIP_DICOM} -verify_return_error"
    )
    result = lab.exec("cl", ["sh", "-c", script], timeout=30)
    output = result.stdout + result.stderr
    assert "Verify return code: 0 (ok)" in output, output
    assert re.search(r"subject=CN\s*=\s*s[12]\b", output), output
    assert "bl-eht-hguorht-olleh" in output, output  # s_server -rev: the line, reversed


def test_sql_login_and_query_through_the_vip(running: Appliance, backends: Backends, lab: Lab) -> None:
    name = sql_server_name(lab, VIP_DATA)
    assert name in ("s1", "s2")
    log = backends.log(name, "sql")
    assert f"ACCEPT {SNAT}" in log and "LOGIN7" in log and "QUERY SELECT @@SERVERNAME" in log
    assert f"ACCEPT {CLIENT_NET}.1" not in log
    # The mssql check is the PRELOGIN probe, from the SNAT address too.
    assert running.server("SQL", "Server1")["last_check"]["status"] == "L7OK"
    assert "PRELOGIN" in backends.log("s1", "sql")


def test_status_reports_every_vip_and_real_server(running: Appliance) -> None:
    status = running.status()
    assert status["healthy"] and status["haproxy"]["running"]
    assert [s["name"] for s in status["services"]] == list(full_site()["services"])
    for service in status["services"]:
        assert service["state"] == "OPEN"
        assert service["vip"].startswith((VIP_DICOM, VIP_DATA))
        assert [s["label"] for s in service["servers"]] == ["Server1", "Server2"]
        for server in service["servers"]:
            assert server["state"] == "UP"
            assert server["last_check"]["status"] in ("L4OK", "L6OK", "L7OK", "PROCOK"), server
            assert isinstance(server["sessions"], int)
    text = running.lbctl("status").stdout
    assert "healthy" in text and "DICOM" in text and "10.77.2.11:104" in text
