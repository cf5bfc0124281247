"""DICOM client for the lab and the bench (pynetdicom), run inside the client namespace.

Unlike dcmtk's tools it can pick the client's source address, which is what source-IP
persistence keys on. Every mode prints one JSON document on stdout.

    find   --host VIP --port 8104 --aec WLSRV --source A [--source B ...] --repeat N
           one worklist C-FIND per association; reports the patient names each one got
    store  --host VIP --port 104 --file F.dcm --source A --repeat N
           one C-STORE per association; reports status and seconds

(Holding hundreds of associations at once is echo_hold.py's job.)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from pydicom.dataset import Dataset
from pynetdicom import AE, debug_logger  # noqa: F401  (debug_logger for manual runs)
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("find", "store"))
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--aec", default="ANY-SCP", help="called AE title")
    parser.add_argument("--source", action="append", required=True)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--file")
    args = parser.parse_args()
    result = {"find": find, "store": store}[args.mode](args)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
