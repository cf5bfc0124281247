"""DICOM client for the lab and the bench (pynetdicom), run inside the client namespace.

Unlike dcmtk's tools it can pick the client's source address, which is what source-IP
persistence keys on. Every mode prints one JSON document on stdout.

    find   --host VIP --port 8104 --aec WLSRV --source A [--source B ...] --repeat N
           one worklist C-FIND per association; reports the patient names each one got
    store  --host VIP --port 104 --file F.dcm --source A --repeat N
           one C-STORE per association; reports status and seconds
    hold   --host VIP --port 104 --source A [...] --per-source N --hold SECONDS [--status-file F]
           opens N associations per source address all at once, keeps them open, then each
           does a C-ECHO and releases: how many concurrent associations hold, none failing
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time

from pydicom.dataset import Dataset
from pynetdicom import AE, debug_logger  # noqa: F401  (debug_logger for manual runs)
from pynetdicom.sop_class import ModalityWorklistInformationFind, Verification

CALLING_AE = "LBT-CLIENT"


def find(args: argparse.Namespace) -> list[dict]:
    ae = AE(ae_title=CALLING_AE)
    ae.add_requested_context(ModalityWorklistInformationFind)
    query = Dataset()
    query.PatientName = ""
    query.PatientID = ""
    step = Dataset()
    step.Modality = ""
    query.ScheduledProcedureStepSequence = [step]
    results = []
    for source in args.source:
        for _ in range(args.repeat):
            assoc = ae.associate(args.host, args.port, ae_title=args.aec, bind_address=(source, 0))
            entry: dict = {"source": source, "ok": False, "patients": []}
            if assoc.is_established:
                for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
                    if status and status.Status in (0xFF00, 0xFF01) and identifier is not None:
                        entry["patients"].append(str(identifier.PatientName))
                    elif status and status.Status == 0x0000:
                        entry["ok"] = True
                assoc.release()
            results.append(entry)
    return results


def store(args: argparse.Namespace) -> list[dict]:
    from pydicom import dcmread

    dataset = dcmread(args.file)
    ae = AE(ae_title=CALLING_AE)
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    results = []
    for source in args.source:
        for _ in range(args.repeat):
            started = time.monotonic()
            assoc = ae.associate(args.host, args.port, ae_title=args.aec, bind_address=(source, 0))
            entry: dict = {"source": source, "ok": False}
            if assoc.is_established:
                status = assoc.send_c_store(dataset)
                entry["ok"] = bool(status) and status.Status == 0x0000
                assoc.release()
            entry["seconds"] = time.monotonic() - started
            results.append(entry)
    return results


def hold(args: argparse.Namespace) -> dict:
    # pynetdicom polls each association's socket every millisecond; 500 of them in one process
    # starve each other (and the early ones hit the network timeout before the last one opens).
    # Polling every 20 ms keeps one client able to hold hundreds; HAProxy is what is measured.
    from pynetdicom import dul

    original_init = dul.DULServiceProvider.__init__

    def slower_polling(self, *a, **k) -> None:
        original_init(self, *a, **k)
        self._run_loop_delay = 0.02

    dul.DULServiceProvider.__init__ = slower_polling
    ae = AE(ae_title=CALLING_AE)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = 60
    ae.network_timeout = 300        # held associations are idle until the last one is open
    ae.maximum_associations = 1000
    total = len(args.source) * args.per_source
    associations: list = [None] * total
    opened = threading.Barrier(total + 1, timeout=120)
    results: list[dict] = [{} for _ in range(total)]

    def one(index: int, source: str) -> None:
        started = time.monotonic()
        assoc = ae.associate(args.host, args.port, ae_title=args.aec, bind_address=(source, 0))
        associations[index] = assoc
        results[index] = {"source": source, "established": assoc.is_established,
                          "associate_seconds": time.monotonic() - started}
        try:
            opened.wait()           # everybody is associated (or failed) before anyone echoes
        except threading.BrokenBarrierError:
            pass

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(n, args.source[n % len(args.source)]), daemon=True)
               for n in range(total)]
    for thread in threads:
        thread.start()
        time.sleep(0.002)   # a ramp of 1 s per 500, not one burst of SYNs at the real servers' backlog
    opened.wait()
    all_open_seconds = time.monotonic() - started
    held = sum(1 for a in associations if a is not None and a.is_established)
    if args.status_file:                    # tell the caller: all are open now, look at HAProxy
        with open(args.status_file, "w") as f:
            json.dump({"held": held}, f)
    time.sleep(args.hold)
    for n, assoc in enumerate(associations):
        if assoc is not None and assoc.is_established:
            status = assoc.send_c_echo()
            results[n]["echo_ok"] = bool(status) and status.Status == 0x0000
            assoc.release()
        else:
            results[n]["echo_ok"] = False
    return {"requested": total, "established": held, "seconds_until_all_open": all_open_seconds,
            "echo_ok": sum(1 for r in results if r.get("echo_ok")),
            "failures": [r for r in results if not r.get("echo_ok")][:20]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("find", "store", "hold"))
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--aec", default="ANY-SCP", help="called AE title")
    parser.add_argument("--source", action="append", required=True)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--file")
    parser.add_argument("--per-source", type=int, default=1)
    parser.add_argument("--hold", type=float, default=1.0)
    parser.add_argument("--status-file")
    args = parser.parse_args()
    result = {"find": find, "store": store, "hold": hold}[args.mode](args)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
