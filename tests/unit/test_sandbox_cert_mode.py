"""Certificate mode (protocol §6): the sandbox's own PKI, cert SNs as Alipay computes them,
answers with alipay_cert_sn, requests checked for app_cert_sn and alipay_root_cert_sn, and a
rotation of the Alipay certificate with alipay.open.app.alipaycert.download."""
import base64
import json

import pytest

from chalicelib.alipay import gateway, keys
from sandbox import certs
from tests.sandboxkit import Merchant
from tests.vectorfiles import VECTORS, params

QUERY, DOWNLOAD = "alipay.trade.query", "alipay.open.app.alipaycert.download"


@pytest.mark.parametrize("case", params("cert_sn.json", "cert_sn"))
def test_sandbox_cert_sn_matches_the_vectors(case):
    cert = certs.load_cert(certs.split_pem((VECTORS / case["cert_file"]).read_text())[0])
    assert certs.cert_sn(cert) == case["expected_sn"]


@pytest.mark.parametrize("case", params("cert_sn.json", "root_cert_sn"))
def test_sandbox_root_cert_sn_matches_the_vectors(case):
    assert certs.root_cert_sn((VECTORS / case["bundle_file"]).read_text()) == case["expected_sn"]


@pytest.fixture
def merchant():
    return Merchant(cert_mode=True)


def test_registration_hands_out_certificates_that_chain_to_the_root(merchant):
    material = merchant.registered
    bundle = certs.split_pem(material["alipay_root_cert"])
    assert len(bundle) == 2  # an ECDSA-signed root that the root SN leaves out, and the RSA root
    rsa_root = certs.load_cert(bundle[1])
    for name in ("app_cert", "alipay_cert"):
        certs.load_cert(material[name]).verify_directly_issued_by(rsa_root)
    # The service computes the same SNs from what it is given (each side checks the other).
    assert keys.root_cert_sn(material["alipay_root_cert"]) == material["alipay_root_cert_sn"] == \
        certs.cert_sn(rsa_root)
    assert keys.cert_sn(keys.load_certificate(material["alipay_cert"])) == material["alipay_cert_sn"]
    app_cert_key = certs.load_cert(material["app_cert"]).public_key()
    assert keys.same_key(app_cert_key, merchant.app_key.public_key())


def test_answers_carry_alipay_cert_sn_and_verify_with_the_certificate_key(merchant):
    response = merchant.call(QUERY, {"out_trade_no": "NONE"})
    body = json.loads(response.data)
    assert body["alipay_cert_sn"] == merchant.registered["alipay_cert_sn"]
    answer = gateway.verify_response(response.data.decode(), QUERY, merchant.alipay_keys(),
                                     alipay_cert_sn=merchant.registered["alipay_cert_sn"])
    assert answer.fields["sub_code"] == "ACQ.TRADE_NOT_EXIST"


def test_notifications_and_returns_are_signed_with_the_certificate_key(merchant):
    from chalicelib.alipay import signing
    from tests.sandboxkit import query_of
    cashier = merchant.opened("C1", return_url="http://shop.example/back")
    back = merchant.client.post(cashier + "/pay")
    note = {k: v for k, v in merchant.notifications("C1")[0].items() if k != "label"}
    for fields in (note, query_of(back.headers["Location"])):
        signing.verify_params(fields, merchant.alipay_keys(), "RSA2")


@pytest.mark.parametrize("spoil,sub_code", [("app_cert_sn", "isv.app-cert-not-exist"),
                                            ("alipay_root_cert_sn", "isv.invalid-alipay-root-cert-sn")])
def test_a_request_naming_other_certificates_is_refused(merchant, spoil, sub_code):
    answer = merchant.answer(merchant.call(QUERY, {"out_trade_no": "X"}, **{spoil: "0" * 32}), QUERY)
    assert (answer["code"], answer["sub_code"]) == ("40002", sub_code)


def test_rotation_signs_under_a_new_certificate_and_both_are_downloadable(merchant):
    old_sn = merchant.registered["alipay_cert_sn"]
    rotated = json.loads(merchant.admin("/sandbox/rotate_alipay_cert", {}).data)
    assert rotated["previous_alipay_cert_sn"] == old_sn and rotated["alipay_cert_sn"] != old_sn
    response = merchant.call(DOWNLOAD, {"alipay_cert_sn": rotated["alipay_cert_sn"]})
    assert json.loads(response.data)["alipay_cert_sn"] == rotated["alipay_cert_sn"]
    with pytest.raises(gateway.GatewayError):  # what a client holding the old certificate sees
        gateway.verify_response(response.data.decode(), DOWNLOAD, merchant.alipay_keys(), alipay_cert_sn=old_sn)
    fields = json.loads(response.data)["alipay_open_app_alipaycert_download_response"]
    new_cert = certs.load_cert(base64.b64decode(fields["alipay_cert_content"]).decode())
    new_cert.verify_directly_issued_by(certs.load_cert(certs.split_pem(merchant.registered["alipay_root_cert"])[1]))
    assert keys.cert_sn(new_cert) == rotated["alipay_cert_sn"]
    # The answer verifies with the downloaded certificate's key.
    gateway.verify_response(response.data.decode(), DOWNLOAD, [new_cert.public_key()],
                            alipay_cert_sn=rotated["alipay_cert_sn"])
    old = merchant.answer(merchant.call(DOWNLOAD, {"alipay_cert_sn": old_sn}), DOWNLOAD)
    assert keys.cert_sn(keys.load_certificate(base64.b64decode(old["alipay_cert_content"]).decode())) == old_sn
    unknown = merchant.answer(merchant.call(DOWNLOAD, {"alipay_cert_sn": "f" * 32}), DOWNLOAD)
    assert unknown["code"] == "40004"


def test_a_public_key_mode_app_is_untouched_by_certificate_mode():
    merchant = Merchant()
    body = json.loads(merchant.call(QUERY, {"out_trade_no": "X"}).data)
    assert "alipay_cert_sn" not in body and "app_cert" not in merchant.registered
