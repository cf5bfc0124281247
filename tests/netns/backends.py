"""Real servers for the lab: third-party daemons in the server namespaces, one set per server.

    DICOM 104, QRSCP 107   dcmtk storescp (C-STORE, C-ECHO), logs each association's peer
    DMWL 8104              dcmtk wlmscpfs with one worklist entry naming its server
    DICOM-Secure 2762      openssl s_server with the server's own certificate
    SQL 1433               tests/netns/peers/tds_server.py (no real SQL Server: a TDS peer)
    LDAP 3890, LDAPS 6360  Debian slapd, unprivileged, suffix dc=<server>,dc=test

Each server is told apart by what it answers (file lands in its directory, worklist patient
'<Server>^Patient', TLS certificate CN, SQL @@SERVERNAME, LDAP naming context).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.netns.netlab import SERVER_ADDRESSES, VIP_DATA, VIP_DICOM, Lab, Proc, run

PEERS = Path(__file__).parent / "peers"
WORKLIST_AE = "WLSRV"


@dataclass
class Certificates:
    ca: Path
    certs: dict[str, tuple[Path, Path]]  # server -> (cert, key)


def make_certificates(directory: Path) -> Certificates:
    """A test CA and one certificate per real server (CN=<server>), valid for the VIPs too."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.pem"
    run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(ca_key),
            "-out",
            str(ca),
            "-subj",
            "/CN=lbt test CA",
            "-days",
            "2",
        ]
    )
    certs = {}
    for server, address in SERVER_ADDRESSES.items():
        key, csr, cert = directory / f"{server}.key", directory / f"{server}.csr", directory / f"{server}.pem"
        ext = directory / f"{server}.ext"
        ext.write_text(f"subjectAltName=IP:{address},IP:{VIP_DICOM},IP:{VIP_DATA}\n")
        run(
            [
                "openssl",
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(csr),
                "-subj",
                f"/CN={server}",
            ]
        )
        run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                str(csr),
                "-CA",
                str(ca),
                "-CAkey",
                str(ca_key),
                "-CAcreateserial",
                "-out",
                str(cert),
                "-days",
                "2",
                "-extfile",
                str(ext),
            ]
        )
        certs[server] = (cert, key)
    run(["chmod", "-R", "a+rX", str(directory)])
    return Certificates(ca=ca, certs=certs)


def write_worklist(directory: Path, server: str) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    ae_dir = directory / WORKLIST_AE
    ae_dir.mkdir(parents=True, exist_ok=True)
    (ae_dir / "lockfile").touch()  # wlmscpfs wants it in every AE title directory
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.31")
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = f"{server.capitalize()}^Patient"
    ds.PatientID = f"WL-{server}"
    ds.AccessionNumber = f"ACC-{server}"
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledStationAETitle = "CT1"
    step.ScheduledProcedureStepStartDate = "20250101"
    ds.ScheduledProcedureStepSequence = [step]
    ds.save_as(ae_dir / f"{server}.wl", enforce_file_format=True)


SLAPD_CONF = """\
include /etc/ldap/schema/core.schema
pidfile {dir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCACertificateFile {ca}
TLSCertificateFile {cert}
TLSCertificateKeyFile {key}
database mdb
suffix "dc={server},dc=test"
rootdn "cn=admin,dc={server},dc=test"
rootpw secret
directory {dir}/db
"""


@dataclass
class RealServer:
    name: str  # s1, s2
    address: str
    root: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    @property
    def dicom_dir(self) -> Path:
        return self.root / "dicom"


@dataclass
class Backends:
    lab: Lab
    certificates: Certificates
    servers: dict[str, RealServer]

    def start(self, server: str, service: str) -> Proc:
        s = self.servers[server]
        lab = self.lab
        if service == "dicom":
            s.dicom_dir.mkdir(parents=True, exist_ok=True)
            proc = lab.spawn(
                server,
                f"{server}-storescp",
                ["/usr/bin/storescp", "-d", "-dhl", "--fork", "-od", str(s.dicom_dir), "104"],
            )
            port = 104
        elif service == "qrscp":
            proc = lab.spawn(server, f"{server}-qrscp", ["/usr/bin/storescp", "-dhl", "--fork", "--ignore", "107"])
            port = 107
        elif service == "worklist":
            write_worklist(s.root / "worklist", server)
            proc = lab.spawn(
                server,
                f"{server}-wlmscpfs",
                ["/usr/bin/wlmscpfs", "-dhl", "-dfr", "-dfp", str(s.root / "worklist"), "8104"],
            )
            port = 8104
        elif service == "tls":
            cert, key = self.certificates.certs[server]
            proc = lab.spawn(
                server,
                f"{server}-s_server",
                ["openssl", "s_server", "-quiet", "-rev", "-accept", "2762", "-cert", str(cert), "-key", str(key)],
            )
            port = 2762
        elif service == "sql":
            proc = lab.spawn(
                server,
                f"{server}-tds",
                [
                    sys.executable,
                    str(PEERS / "tds_server.py"),
                    "--port",
                    "1433",
                    "--name",
                    server,
                    "--log",
                    str(s.root / "tds.log"),
                ],
            )
            port = 1433
        elif service == "ldap":
            ldap_dir = s.root / "ldap"
            (ldap_dir / "db").mkdir(parents=True, exist_ok=True)
            cert, key = self.certificates.certs[server]
            (ldap_dir / "slapd.conf").write_text(
                SLAPD_CONF.format(dir=ldap_dir, server=server, cert=cert, key=key, ca=self.certificates.ca)
            )
            run(["chown", "-R", "nobody:nogroup", str(ldap_dir)])
            # Unprivileged: slapd drops to nobody right after binding its (unprivileged) ports.
            proc = lab.spawn(
                server,
                f"{server}-slapd",
                [
                    "slapd",
                    "-d",
                    "256",
                    "-u",
                    "nobody",
                    "-g",
                    "nogroup",
                    "-f",
                    str(ldap_dir / "slapd.conf"),
                    "-h",
                    "ldap://0.0.0.0:3890/ ldaps://0.0.0.0:6360/",
                ],
            )
            port = 3890
        else:
            raise ValueError(service)
        s.procs[service] = proc
        lab.wait_port(server, "0.0.0.0", port)
        return proc

    def stop(self, server: str, service: str) -> None:
        self.servers[server].procs.pop(service).stop()

    def log(self, server: str, service: str) -> str:
        if service == "sql":
            path = self.servers[server].root / "tds.log"
            return path.read_text() if path.exists() else ""
        return self.servers[server].procs[service].output()


SERVICES = ("dicom", "qrscp", "worklist", "tls", "sql", "ldap")


def start_backends(lab: Lab, workdir: Path) -> Backends:
    certificates = make_certificates(workdir / "pki")
    servers = {name: RealServer(name, address, workdir / name) for name, address in SERVER_ADDRESSES.items()}
    backends = Backends(lab, certificates, servers)
    for name in servers:
        servers[name].root.mkdir(parents=True, exist_ok=True)
        for service in SERVICES:
            backends.start(name, service)
    return backends
