"""The DICOM PDUs of the dicom-echo check, against bytes verified with pynetdicom and HAProxy."""

from __future__ import annotations

from pynetdicom.pdu import A_ASSOCIATE_RQ, P_DATA_TF

from lbctl.site.healthchecks import CHECKS, a_associate_rq, c_echo_rq

# From the runtime notes (section 8): verified against a pynetdicom 3.0.4 SCP and HAProxy 3.0.
VERIFIED_RQ = (
    "0100000000cb00010000414e592d534350202020202020202020484150524f58592d43484b2020202020000000000000"
    "000000000000000000000000000000000000000000000000000010000015312e322e3834302e31303030382e332e312e"
    "312e312000002e0100000030000011312e322e3834302e31303030382e312e3140000011312e322e3834302e31303030"
    "382e312e325000003851000004000040005200002c322e32352e31343737333634343037313238353332313833383932"
    "3333333732303036383933383536313731"
)
VERIFIED_ECHO = (
    "04000000004a0000004601030000000004000000380000000000020012000000312e322e3834302e31303030382e312e"
    "3100000000010200000030000000100102000000010000000008020000000101"
)


def test_associate_request_matches_the_verified_bytes() -> None:
    rq = a_associate_rq("ANY-SCP", "HAPROXY-CHK", "2.25.147736440712853218389233372006893856171", None)
    assert rq.hex() == VERIFIED_RQ


def test_c_echo_request_matches_the_verified_bytes() -> None:
    assert c_echo_rq().hex() == VERIFIED_ECHO


def test_pynetdicom_decodes_our_pdus() -> None:
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(a_associate_rq("ISPACS", "LBAPPLIANCE"))
    assert pdu.called_ae_title == "ISPACS" and pdu.calling_ae_title == "LBAPPLIANCE"
    context = pdu.presentation_context[0]
    assert context.abstract_syntax == "1.2.840.10008.1.1"
    assert context.transfer_syntax == ["1.2.840.10008.1.2"]
    assert pdu.user_information is not None
    assert pdu.user_information.implementation_version_name == "LBCTL"
    data = P_DATA_TF()
    data.decode(c_echo_rq())
    assert data.presentation_data_value_items[0].presentation_context_id == 1


def test_catalogue() -> None:
    assert list(CHECKS) == ["connect", "ping", "mssql", "dicom-echo", "ldap"]
    assert [c.name for c in CHECKS.values() if c.external] == ["ping"]
