"""Every conformance vector in tests/vectors, positive and negative, read from the files."""
import base64
import hashlib
import json

import pytest

from chalicelib.alipay import aes, gateway, keys, notify, pay, signing
from chalicelib.alipay.errors import GatewayError, InvalidSignature
from tests.vectorfiles import VECTORS, params, private_key, public_key, text


def verifies(fields, key_file, sign_type, charset, excluded):
    try:
        signing.verify_params(fields, [public_key(key_file)], sign_type, charset, excluded=frozenset(excluded))
        return True
    except InvalidSignature:
        return False


# ---- keys and certificates ---------------------------------------------------------------

@pytest.mark.parametrize("case", params("key_formats.json"))
def test_key_formats_load_to_the_same_key(case):
    loaders = {"private": private_key, "public": public_key, "certificate": public_key}
    key = loaders[case["kind"]](case["key_file"])
    assert keys.spki_sha256(key) == case["expected_spki_sha256"]


@pytest.mark.parametrize("case", params("cert_sn.json", "cert_sn"))
def test_cert_sn(case):
    cert = keys.load_certificate(text(case["cert_file"]))
    assert cert.issuer.rfc4514_string() == case["expected_issuer"]
    assert str(cert.serial_number) == case["expected_serial_decimal"]
    assert keys.cert_sn(cert) == case["expected_sn"]


@pytest.mark.parametrize("case", params("cert_sn.json", "root_cert_sn"))
def test_root_cert_sn_keeps_rsa_signed_roots_only(case):
    raw = (VECTORS / case["bundle_file"]).read_bytes()
    assert (b"\r\n" in raw) == (case["line_endings"] == "CRLF")
    assert keys.root_cert_sn(raw) == case["expected_sn"]
    assert keys.root_cert_sn(raw.decode()) == case["expected_sn"]


@pytest.mark.parametrize("case", params("cert_sn.json", "public_key_from_cert"))
def test_public_key_from_certificate(case):
    key = keys.load_public_key(text(case["cert_file"]))
    assert keys.spki_base64(key) == case["expected_public_key_base64"]


# ---- request signing ---------------------------------------------------------------------

@pytest.mark.parametrize("case", params("request_sign.json"))
def test_request_string_to_sign(case):
    assert signing.canonical_string(case["params"], signing.REQUEST_EXCLUDED) == case["expected_string_to_sign"]


@pytest.mark.parametrize("case", [p for p in params("request_sign.json") if "expected_sign" in p.values[0]])
def test_request_signature(case):
    sign = signing.sign_params(case["params"], private_key(case["private_key_file"]), case["sign_type"], case["charset"])
    assert sign == case["expected_sign"]
    assert "\n" not in sign
    signed = dict(case["params"], sign=sign)
    assert verifies(signed, case["public_key_file"], case["sign_type"], case["charset"], signing.REQUEST_EXCLUDED)
    for name, extra in case.get("extra_signatures", {}).items():
        if name == "sha1_over_same_string":
            content = case["expected_string_to_sign"].encode(case["charset"])
            assert signing.rsa_sign(private_key(case["private_key_file"]), content, "RSA") == extra


@pytest.mark.parametrize("case", [p for p in params("request_sign.json") if "query_key_order" in p.values[0]])
def test_request_query_and_order_string(case):
    ordered = {key: case["params"][key] for key in case["query_key_order"]}
    ordered["sign"] = case["expected_sign"]
    encoded = pay.form_encode(ordered, case["charset"])
    assert encoded == case.get("expected_query", case.get("expected_order_string"))
    if "expected_url" in case:
        assert pay.gateway_url(case["gateway"], ordered, case["charset"]) == case["expected_url"]


@pytest.mark.parametrize("case", [p for p in params("request_sign.json") if p.values[0]["name"].startswith("derived_")])
def test_our_builders_reproduce_the_derived_requests(case):
    """signed_request from the same inputs gives the vector's signature (timestamp pinned)."""
    given = case["params"]
    credentials = pay.AppCredentials(app_id=given["app_id"], private_key=private_key(case["private_key_file"]),
                                     sign_type=given["sign_type"], charset=given["charset"])
    import datetime
    from chalicelib.alipay.money import BEIJING
    now = datetime.datetime.strptime(given["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    extra = {k: v for k, v in given.items()
             if k not in ("app_id", "method", "format", "charset", "sign_type", "timestamp", "version", "biz_content")}
    built = pay.signed_request(credentials, given["method"], given["biz_content"], now=now, **extra)
    assert built["sign"] == case["expected_sign"]
    if "expected_order_string" in case:
        assert pay.app_order_string(built) == case["expected_order_string"]
    if "expected_url" in case:
        assert pay.gateway_url(case["gateway"], built) == case["expected_url"]


# ---- notifications, gateway messages, returns --------------------------------------------

@pytest.mark.parametrize("case", params("notify_v1_real.json") + params("gateway_message_v2.json"))
def test_notification_and_gateway_message_signatures(case):
    assert signing.canonical_string(case["params"], case["exclude_keys"]) == case["expected_string_to_sign"]
    assert verifies(case["params"], case["public_key_file"], case["sign_type"], case["charset"],
                    case["exclude_keys"]) is case["expected_verify"]


@pytest.mark.parametrize("case", params("form_decoding.json") + params("return_url.json"))
def test_raw_bodies_parse_once_and_verify(case):
    raw = case.get("raw_body", case.get("raw_query"))
    fields, codec = notify.parse_form(raw.encode("ascii"))
    assert fields == case["expected_params"]
    assert codec == notify.codec_for(case["charset"])
    assert signing.canonical_string(fields, case["exclude_keys"]) == case["expected_string_to_sign"]
    assert signing.rsa_sign(private_key(case["private_key_file"]),
                            case["expected_string_to_sign"].encode(codec), case["sign_type"]) == case["expected_sign"]
    assert verifies(fields, case["public_key_file"], case["sign_type"], codec,
                    case["exclude_keys"]) is case["expected_verify"]


def _wrong_decodings():
    out = []
    for file_name in ("form_decoding.json", "return_url.json"):
        for p in params(file_name):
            for wrong in p.values[0].get("wrong_decodings", []):
                out.append(pytest.param(p.values[0], wrong, id=f"{p.id}-{wrong['name']}"))
    return out


@pytest.mark.parametrize("case,wrong", _wrong_decodings())
def test_wrong_decodings_fail(case, wrong):
    charset = wrong.get("verify_charset", case["charset"])
    assert verifies(wrong["params"], case["public_key_file"], case["sign_type"], charset,
                    wrong["exclude_keys"]) is wrong["expected_verify"] is False
    if wrong.get("raw_query", case.get("raw_query")) != case.get("raw_query"):
        # Given what arrived, our parser includes whatever arrived: the extra parameter fails.
        fields, codec = notify.parse_form(wrong["raw_query"].encode("ascii"))
        assert not verifies(fields, case["public_key_file"], case["sign_type"], codec, signing.NOTIFY_V1_EXCLUDED)


# ---- legacy MD5 --------------------------------------------------------------------------

@pytest.mark.parametrize("case", params("md5_legacy.json"))
def test_md5_legacy(case):
    kind = case["kind"]
    if "expected_string_to_sign" in case:
        assert signing.canonical_string(case["params"], signing.MD5_EXCLUDED) == case["expected_string_to_sign"]
    if kind == "md5_sign":
        assert signing.md5_sign(case["params"], case["key"], case["charset"]) == case["expected_sign"]
    if kind == "md5_verify":
        try:
            signing.md5_verify(case["params"], case["key"], case["charset"])
            ok = True
        except InvalidSignature:
            ok = False
        assert ok is case["expected_verify"]
    if "notify_verify" in case:
        from chalicelib.alipay.legacy import notify_verify_url, notify_verify_says_true
        check = case["notify_verify"]
        assert notify_verify_url("https://mapi.alipay.com/gateway.do", check["partner"],
                                 case["params"]["notify_id"]) == check["expected_url"]
        assert notify_verify_says_true(check["valid_response_body"])
        assert not any(notify_verify_says_true(body) for body in check["invalid_response_bodies"])
    if "expected_url" in case:
        p = case["params"]
        built = pay.legacy_pay_params(p["partner"], case["key"], p["out_trade_no"], p["subject"],
                                      p["total_fee"], p["notify_url"], p["return_url"], body=p.get("body"))
        assert pay.gateway_url(case["gateway"], built) == case["expected_url"]
    if kind == "rsa_sign":
        key = private_key(case["private_key_file"])
        sign = signing.rsa_sign(key, case["string_to_sign"].encode(), "RSA")
        assert sign == case["expected_sign"]
        pub = [public_key(case["public_key_file"])]
        assert signing.rsa_verify(pub, case["string_to_sign"].encode(), sign, "RSA")
        assert not signing.rsa_verify(pub, case["negative_string"].encode(), sign, "RSA")


# ---- AES ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", params("aes.json"))
def test_aes(case):
    key = aes.load_aes_key(case["key_base64"])
    if case["kind"] == "aes":
        assert key.hex() == case["key_hex"] and case["iv_hex"] == "00" * 16
        assert aes.encrypt(key, case["plaintext"]) == case["ciphertext_base64"]
        assert aes.decrypt(key, case["ciphertext_base64"]) == case["plaintext"]
    else:
        assert aes.encrypt(key, case["biz_content_plaintext"]) == case["params"]["biz_content"]
        assert signing.canonical_string(case["params"], signing.REQUEST_EXCLUDED) == case["expected_string_to_sign"]
        assert signing.sign_params(case["params"], private_key(case["private_key_file"])) == case["expected_sign"]


# ---- gateway responses -------------------------------------------------------------------

@pytest.mark.parametrize("case", params("response_sign.json", "verify_response"))
def test_response_verification(case):
    node, content, sign, _ = gateway.extract_signed_content(case["raw_body"], case["response_node"])
    assert content == case["expected_signed_content"]
    assert sign == case["expected_sign"]
    assert node == case.get("expected_node_found", case["response_node"])
    if "naive_brace_count_content" in case:
        assert content != case["naive_brace_count_content"]
    if "expected_verify_without_slash_fallback" in case:
        direct = signing.rsa_verify([public_key(case["public_key_file"])], content.encode(), sign)
        assert direct is case["expected_verify_without_slash_fallback"]
    aes_key = aes.load_aes_key(case["aes_key_base64"]) if "aes_key_base64" in case else None
    keys_ = [public_key(case["public_key_file"])]
    if case["expected_verify"]:
        response = gateway.verify_response(case["raw_body"], case["response_node"], keys_, case["sign_type"],
                                           case["charset"], aes_key=aes_key)
        expected = case.get("expected_decrypted_content", case["expected_signed_content"].replace("\\/", "/"))
        assert response.fields == json.loads(expected)
    else:
        with pytest.raises((InvalidSignature, GatewayError)):
            gateway.verify_response(case["raw_body"], case["response_node"], keys_, case["sign_type"],
                                    case["charset"], aes_key=aes_key)
    if "app_sdk_result" in case:
        result = case["app_sdk_result"]["result"]
        response = gateway.verify_response(result, "alipay.trade.app.pay", keys_)
        assert response.fields["out_trade_no"] == json.loads(case["expected_signed_content"])["out_trade_no"]


@pytest.mark.parametrize("case", params("response_sign.json", "verify_content"))
def test_response_content_verification(case):
    ok = signing.rsa_verify([public_key(case["public_key_file"])], case["content"].encode(case["charset"]),
                            case["sign"], case["sign_type"])
    assert ok is case["expected_verify"]


@pytest.mark.parametrize("case", params("response_sign.json", "extract_only"))
def test_response_extraction(case):
    _, content, _, _ = gateway.extract_signed_content(case["raw_body"], case["response_node"])
    assert content == case["expected_signed_content"]


def test_spki_sha256_is_what_the_vectors_mean():
    der = base64.b64decode(text("node_app_public_key_oneline.pem").strip())
    assert hashlib.sha256(der).hexdigest() == keys.spki_sha256(public_key("node_app_public_key.pem"))
