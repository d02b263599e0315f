"""The sandbox's own protocol code against the vectors, so that it cannot drift into agreeing
with the service's bugs (it shares no code with chalicelib.alipay)."""
import pytest
from cryptography.hazmat.primitives import serialization

from sandbox import protocol
from tests.vectorfiles import VECTORS, params


def private(name):
    return serialization.load_pem_private_key((VECTORS / name).read_bytes(), None)


def public(name):
    text = (VECTORS / name).read_text()
    if "CERTIFICATE" in text:
        from cryptography import x509
        return x509.load_pem_x509_certificate(text.encode()).public_key()
    return protocol.public_key_from_text(text)


@pytest.mark.parametrize("case", [p for p in params("request_sign.json") if "expected_sign" in p.values[0]])
def test_sandbox_verifies_request_vectors_as_alipay(case):
    text = protocol.string_to_sign(case["params"], {"sign"})
    assert text == case["expected_string_to_sign"]
    assert protocol.rsa_verify(public(case["public_key_file"]), text, case["expected_sign"], case["sign_type"],
                               case["charset"])
    assert not protocol.rsa_verify(public(case["public_key_file"]), text + "x", case["expected_sign"],
                                   case["sign_type"])


@pytest.mark.parametrize("case", params("form_decoding.json") + params("return_url.json"))
def test_sandbox_signs_notifications_and_returns_like_the_vectors(case):
    raw = case.get("raw_body", case.get("raw_query"))
    fields = protocol.decode(raw, case["charset"])
    assert fields == case["expected_params"]
    text = protocol.string_to_sign(fields, {"sign", "sign_type"})
    assert text == case["expected_string_to_sign"]
    assert protocol.rsa_sign(private(case["private_key_file"]), text, case["sign_type"], case["charset"]) == \
        case["expected_sign"]


@pytest.mark.parametrize("case", params("notify_v1_real.json"))
def test_sandbox_reads_the_real_notification_rule(case):
    text = protocol.string_to_sign(case["params"], set(case["exclude_keys"]))
    ok = protocol.rsa_verify(public(case["public_key_file"]), text, case["params"]["sign"], case["sign_type"])
    assert ok is case["expected_verify"]


@pytest.mark.parametrize("case", params("md5_legacy.json", "md5_sign") + params("md5_legacy.json", "md5_verify"))
def test_sandbox_md5(case):
    if case["kind"] == "md5_sign":
        assert protocol.md5_sign(case["params"], case["key"], case["charset"]) == case["expected_sign"]
    else:
        assert protocol.md5_ok(case["params"], case["key"], case["charset"]) is case["expected_verify"]


@pytest.mark.parametrize("case", [p for p in params("request_sign.json") if "expected_order_string" in p.values[0]
                                  or p.values[0]["name"].startswith("derived_page")])
def test_sandbox_form_encoding_matches_the_vectors(case):
    ordered = {k: case["params"][k] for k in case["query_key_order"]}
    ordered["sign"] = case["expected_sign"]
    assert protocol.encode(ordered) == case.get("expected_query", case.get("expected_order_string"))


def test_sandbox_response_signature_is_what_the_service_verifies():
    from chalicelib.alipay import gateway, keys
    key = private("node_app_private_key_pkcs1.pem")
    body = protocol.signed_response(key, "alipay.trade.query", {"code": "10000", "msg": "Success", "body": "a}\"b"})
    answer = gateway.verify_response(body, "alipay.trade.query", [keys.load_public_key(
        (VECTORS / "node_app_public_key.pem").read_text())])
    assert answer.fields["body"] == 'a}"b'
