"""The merchant secret: validation, cert mode, key rotation, tokens, the cache's TTL."""
import hashlib
import json

import pytest

from chalicelib.alipay import keys, signing
from chalicelib.errors import Unauthorized, Unavailable
from chalicelib.merchant import MerchantConfigError, MerchantSource, parse_secret
from tests.support import Merchant, new_key
from tests.vectorfiles import text


def test_a_valid_secret_parses_into_key_objects():
    m = Merchant()
    config = parse_secret(json.dumps(m.secret))
    assert config.app_id == m.app_id and config.sign_type == "RSA2" and config.legacy_enabled
    assert keys.same_key(config.credentials.private_key, m.app_key)
    assert keys.same_key(config.alipay_keys[0], m.alipay_key)


def test_every_problem_is_reported_at_once():
    with pytest.raises(MerchantConfigError) as caught:
        parse_secret(json.dumps({"sign_type": "MD5", "api_tokens": "abc"}))
    reasons = " | ".join(caught.value.reasons)
    for expected in ("app_id is missing", "app_private_key is missing", "alipay_public_key is missing",
                     "sign_type must be RSA2 or RSA", "api_tokens"):
        assert expected in reasons


def test_not_json_is_refused():
    with pytest.raises(MerchantConfigError, match="not JSON"):
        parse_secret("{nope")


def test_a_list_of_alipay_keys_verifies_with_any_of_them():
    m = Merchant()
    old, new = new_key(), m.alipay_key
    config = parse_secret(json.dumps(dict(m.secret, alipay_public_key=[keys.spki_base64(old),
                                                                        keys.spki_base64(new)])))
    for signer in (old, new):
        fields = {"a": "1"}
        fields["sign"] = signing.rsa_sign(signer, b"a=1")
        signing.verify_params(fields, config.alipay_keys, "RSA2")
    fields = {"a": "1", "sign": signing.rsa_sign(new_key(), b"a=1")}
    with pytest.raises(signing.InvalidSignature):
        signing.verify_params(fields, config.alipay_keys, "RSA2")


def test_cert_mode_takes_alipays_key_from_its_certificate_and_the_sns():
    secret = {"app_id": "9021000122682882", "app_private_key": text("ys_app_private_key_pkcs1_oneline.pem"),
              "app_cert": text("ys_appCertPublicKey.crt"), "alipay_cert": text("ys_alipayCertPublicKey_RSA2.crt"),
              "alipay_root_cert": text("ys_alipayRootCert.crt"), "api_tokens": ["a" * 64]}
    config = parse_secret(json.dumps(secret))
    assert config.credentials.app_cert_sn == "e90dd23a37c5c7b616e003970817ff82"
    assert config.credentials.alipay_root_cert_sn == "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6"
    assert config.alipay_cert_sn == "6f1e366a31d9575cd546914add04f4af"
    with pytest.raises(MerchantConfigError, match="together"):
        parse_secret(json.dumps(dict(secret, alipay_root_cert=None)))


def test_tokens_are_compared_as_hashes():
    m = Merchant()
    config = parse_secret(json.dumps(m.secret))
    assert config.authorize(m.token) == hashlib.sha256(m.token.encode()).hexdigest()[:8]
    for bad in ("", None, m.token + "x", hashlib.sha256(m.token.encode()).hexdigest()):
        with pytest.raises(Unauthorized):
            config.authorize(bad)


def test_the_cache_fetches_once_per_ttl():
    m = Merchant()
    calls, now = [], [0.0]

    class Client:
        def get_secret_value(self, SecretId):
            calls.append(SecretId)
            return {"SecretString": json.dumps(m.secret)}

    source = MerchantSource(lambda: Client(), clock=lambda: now[0])
    first = source.get("id", 300)
    assert source.get("id", 300) is first and len(calls) == 1
    now[0] = 301
    source.get("id", 300)
    assert len(calls) == 2
    source.get("id", 0)
    source.get("id", 0)
    assert len(calls) == 4


def test_an_invalid_stored_secret_is_unavailable_without_echoing_it():
    m = Merchant()
    secret = dict(m.secret, alipay_public_key=keys.spki_base64(m.app_key))

    class Client:
        def get_secret_value(self, SecretId):
            return {"SecretString": json.dumps(secret)}

    with pytest.raises(Unavailable) as caught:
        MerchantSource(lambda: Client()).get("id", 300)
    assert "app's own public key" in str(caught.value) and "PRIVATE" not in str(caught.value)
