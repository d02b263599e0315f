"""The KMS signer's requests, checked with botocore's Stubber: the DIGEST path (moto hashes a digest
again, unlike KMS: traps.md), the 4,096-byte boundary, refusals and failures. The signatures the
stub answers are computed with `cryptography`, exactly as KMS would make them; the RAW path is
tested against a moto server in tests/integration/test_kms.py."""
import datetime
import hashlib
import json

import boto3
import pytest
from botocore.stub import Stubber
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils

from chalicelib.alipay import keys, pay, signing
from chalicelib.errors import Unavailable
from chalicelib.merchant import MerchantConfigError, parse_secret
from chalicelib.signers import RAW_MESSAGE_LIMIT, KmsSigner, check_kms_signer
from tests.support import Merchant, new_key

KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
HSM_KEY = new_key()  # stands in for the key inside KMS


@pytest.fixture
def kms():
    client = boto3.client("kms", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def expect_sign(stubber, message, message_type):
    """KMS's answer: RAW is hashed by KMS, DIGEST is signed as given (KMS API reference, Sign)."""
    digest = hashlib.sha256(message).digest() if message_type == "RAW" else message
    signature = HSM_KEY.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    stubber.add_response("sign", {"KeyId": KEY_ARN, "Signature": signature, "SigningAlgorithm":
                                  "RSASSA_PKCS1_V1_5_SHA_256"},
                         {"KeyId": KEY_ARN, "Message": message, "MessageType": message_type,
                          "SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256"})


def credentials(client):
    return pay.AppCredentials(app_id="2021000000000001", signer=KmsSigner(KEY_ARN, lambda: client))


def test_a_string_to_sign_over_4096_bytes_is_sent_as_its_sha256_digest(kms):
    client, stubber = kms
    biz = pay.trade_biz("page", "T1", "88.80", "tea", body="x" * 5000)
    now = datetime.datetime(2026, 11, 27, 5, 0, tzinfo=datetime.timezone.utc)  # the same string both times
    locally_signed = pay.signed_request(pay.AppCredentials(app_id="2021000000000001", private_key=HSM_KEY),
                                        "alipay.trade.page.pay", biz, now=now)
    content = signing.canonical_string(locally_signed, signing.REQUEST_EXCLUDED).encode()
    assert len(content) > RAW_MESSAGE_LIMIT
    expect_sign(stubber, hashlib.sha256(content).digest(), "DIGEST")
    params = pay.signed_request(credentials(client), "alipay.trade.page.pay", biz, now=now)
    # What KMS signed is what Alipay verifies: the whole string, SHA256withRSA; the same bytes as locally.
    signing.verify_params(params, [HSM_KEY.public_key()], "RSA2", excluded=signing.REQUEST_EXCLUDED)
    assert params == locally_signed


@pytest.mark.parametrize("size,message_type", [(RAW_MESSAGE_LIMIT, "RAW"), (RAW_MESSAGE_LIMIT + 1, "DIGEST"),
                                               (1, "RAW")])
def test_raw_up_to_4096_bytes_digest_beyond(kms, size, message_type):
    client, stubber = kms
    content = b"a" * size
    expect_sign(stubber, content if message_type == "RAW" else hashlib.sha256(content).digest(), message_type)
    signature = KmsSigner(KEY_ARN, lambda: client).signature(content, "RSA2")
    HSM_KEY.public_key().verify(signature, content, padding.PKCS1v15(), hashes.SHA256())


def test_rsa_sha1_is_refused_before_any_call(kms):
    client, _ = kms  # no response queued: any call would fail the Stubber
    with pytest.raises(ValueError, match="RSA2 only"):
        KmsSigner(KEY_ARN, lambda: client).signature(b"app_id=1", "RSA")


@pytest.mark.parametrize("code", ["ThrottlingException", "DisabledException", "AccessDeniedException",
                                  "KMSInvalidStateException"])
def test_kms_errors_are_unavailable_and_name_the_code(kms, code):
    client, stubber = kms
    stubber.add_client_error("sign", service_error_code=code, http_status_code=400)
    with pytest.raises(Unavailable, match=code):
        KmsSigner(KEY_ARN, lambda: client).signature(b"app_id=1", "RSA2")


def test_check_refuses_a_key_that_is_not_rsa_2048_sign_verify(kms):
    client, stubber = kms
    stubber.add_response("get_public_key", {"KeyId": KEY_ARN, "PublicKey": keys.spki_der(HSM_KEY),
                                            "KeySpec": "RSA_3072", "KeyUsage": "ENCRYPT_DECRYPT",
                                            "EncryptionAlgorithms": ["RSAES_OAEP_SHA_256"]}, {"KeyId": KEY_ARN})
    reasons = check_kms_signer(KmsSigner(KEY_ARN, lambda: client), [])
    assert len(reasons) == 1
    assert "RSA_3072, not RSA_2048" in reasons[0] and "ENCRYPT_DECRYPT" in reasons[0]


def test_check_catches_a_signature_that_does_not_verify(kms):
    client, stubber = kms
    stubber.add_response("get_public_key", {"KeyId": KEY_ARN, "PublicKey": keys.spki_der(new_key()),
                                            "KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY",
                                            "SigningAlgorithms": ["RSASSA_PKCS1_V1_5_SHA_256"]}, {"KeyId": KEY_ARN})
    stubber.add_response("sign", {"Signature": b"\0" * 256})
    assert check_kms_signer(KmsSigner(KEY_ARN, lambda: client), []) == [
        f"a signature made by the KMS key {KEY_ARN} does not verify with its public key"]


# ---- the secret ----------------------------------------------------------------------------

def kms_secret(**changes):
    secret = dict(Merchant().secret, app_signer={"kms_key_id": KEY_ARN})
    secret.pop("app_private_key")
    return dict(secret, **changes)


def test_app_signer_makes_a_kms_signer_and_no_aws_call():
    calls = []
    config = parse_secret(json.dumps(kms_secret()), lambda: calls.append(1))
    signer = config.credentials.signer
    assert isinstance(signer, KmsSigner) and signer.key_id == KEY_ARN
    assert config.credentials.private_key is None and calls == []


@pytest.mark.parametrize("key_id", [KEY_ARN, "1234abcd-12ab-34cd-56ef-1234567890ab", "alias/chalice-alipay-prod",
                                    "arn:aws-cn:kms:cn-north-1:111122223333:alias/chalice-alipay-prod",
                                    "mrk-1234abcd12ab34cd56ef1234567890ab"])
def test_every_form_of_key_id_kms_takes_is_accepted(key_id):
    assert parse_secret(json.dumps(kms_secret(app_signer={"kms_key_id": key_id}))).credentials.signer.key_id == key_id


@pytest.mark.parametrize("changes,reason", [
    ({"sign_type": "RSA"}, "signs RSA2 only: KMS has no SHA-1 signing, so sign_type must be RSA2"),
    ({"app_signer": {"kms_key_id": ""}}, "app_signer must be"),
    ({"app_signer": "arn:aws:kms:us-east-1:111122223333:key/x"}, "app_signer must be"),
    ({"app_signer": {"kms_key_id": "not a key"}}, "app_signer must be"),
    ({"app_private_key": Merchant().secret["app_private_key"]}, "app_private_key or app_signer, not both"),
])
def test_a_kms_secret_is_refused_with_the_reason(changes, reason):
    with pytest.raises(MerchantConfigError) as caught:
        parse_secret(json.dumps(kms_secret(**changes)))
    assert any(reason in r for r in caught.value.reasons), caught.value.reasons
