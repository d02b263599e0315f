"""The app key held in KMS, against the moto server over HTTP: RAW signatures that `cryptography`
verifies with the key's public key, the app signing through KMS, and the admin commands
(kms-keygen, put-secret, check). The DIGEST path is in tests/unit/test_kms_signer.py (traps.md)."""
import itertools
import json
import os
from urllib.parse import parse_qsl, urlparse

import boto3
import pytest
from cryptography.hazmat.primitives import serialization

from chalicelib.alipay import keys, signing
from chalicelib.signers import KmsSigner
from tests.integration.helpers import create_order, get_order
from tests.integration.test_manage import manage
from tests.support import Merchant

_stages = itertools.count()


@pytest.fixture
def kms(moto):
    return boto3.client("kms")


@pytest.fixture
def kms_key(kms):
    arn = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    public = serialization.load_der_public_key(kms.get_public_key(KeyId=arn)["PublicKey"])
    return arn, public


def kms_secret(merchant, key_id, **changes):
    secret = dict(merchant.secret, app_signer={"kms_key_id": key_id}, **changes)
    secret.pop("app_private_key")
    return secret


@pytest.fixture
def kms_merchant(aws, env, kms_key):
    merchant = Merchant()
    merchant.secret = kms_secret(merchant, kms_key[0])
    merchant.app_key = None  # nothing in this process can sign as the app
    merchant.put(aws["secretsmanager"], env["ALIPAY_SECRET_ID"])
    return merchant


def test_a_raw_kms_signature_verifies_with_the_keys_public_key(kms, kms_key):
    arn, public = kms_key
    content = "app_id=2021000000000001&biz_content={\"subject\":\"测试 A+B\"}&sign_type=RSA2".encode()
    signature = signing.rsa_sign(KmsSigner(arn, lambda: kms), content)
    assert signing.rsa_verify([public], content, signature)
    assert not signing.rsa_verify([public], content + b" ", signature)


@pytest.mark.parametrize("product", ["page", "app"])
def test_the_app_signs_payments_through_kms(client, kms_merchant, kms_key, product):
    order = create_order(client, kms_merchant, product=product)
    payment = order["payment"]
    query = urlparse(payment["url"]).query if product == "page" else payment["order_string"]
    params = dict(parse_qsl(query, keep_blank_values=True))
    assert params["sign_type"] == "RSA2" and params["app_id"] == kms_merchant.app_id
    signing.verify_params(params, [kms_key[1]], "RSA2", excluded=signing.REQUEST_EXCLUDED)


def test_a_kms_key_that_cannot_sign_answers_503_unavailable(client, aws, env, kms):
    # moto signs even with a disabled key (real KMS answers DisabledException): a key that is gone.
    merchant = Merchant()
    gone = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"].rsplit("/", 1)[0]
    merchant.secret = kms_secret(merchant, gone + "/00000000-0000-0000-0000-000000000000")
    merchant.put(aws["secretsmanager"], env["ALIPAY_SECRET_ID"])
    r = client.http.post("/orders", headers={**merchant.auth, "Content-Type": "application/json"},
                         body=json.dumps({"product": "page", "subject": "tea", "total_amount": "1.00"}))
    assert r.status_code == 503 and json.loads(r.body)["error"]["code"] == "unavailable"


def test_notifications_never_need_kms(client, aws, env, kms_merchant):
    """Why the notify function's policy has no kms:Sign: it verifies, it never signs."""
    order = create_order(client, kms_merchant, total_amount="3.00")
    kms_merchant.secret = dict(kms_merchant.secret, app_signer={"kms_key_id": "alias/chalice-alipay-nowhere"})
    kms_merchant.put(aws["secretsmanager"], env["ALIPAY_SECRET_ID"])
    os.environ["SECRET_TTL_SECONDS"] = "0"  # the env fixture restores it
    body = kms_merchant.notification(order["out_trade_no"], "3.00")
    event = {"version": "2.0", "rawPath": "/", "headers": {"content-type": "application/x-www-form-urlencoded"},
             "requestContext": {"http": {"method": "POST", "path": "/"}}, "body": body.decode(),
             "isBase64Encoded": False}
    answer = client.lambda_.invoke("notify", event).payload
    assert answer["statusCode"] == 200 and answer["body"] == "success"
    assert get_order(client, kms_merchant, order["out_trade_no"])[1]["status"] == "TRADE_SUCCESS"
    r = client.http.post("/orders", headers={**kms_merchant.auth, "Content-Type": "application/json"},
                         body=json.dumps({"product": "page", "subject": "tea", "total_amount": "1.00"}))
    assert r.status_code == 503  # while signing, with that key, is impossible


def test_kms_keygen_makes_the_stage_key_and_prints_its_public_key(kms):
    stage = f"kmstest{next(_stages)}"
    code, out, err = manage("kms-keygen", "--stage", stage)
    assert code == 0, err
    metadata = kms.describe_key(KeyId=f"alias/chalice-alipay-{stage}")["KeyMetadata"]
    assert (metadata["KeySpec"], metadata["KeyUsage"]) == ("RSA_2048", "SIGN_VERIFY")
    line = out.strip()
    assert "\n" not in line and line == keys.spki_base64(
        serialization.load_der_public_key(kms.get_public_key(KeyId=metadata["Arn"])["PublicKey"]))
    assert metadata["Arn"] in err  # what goes into the secret's app_signer
    # Again: the alias is not moved to a new key; the same public key is printed.
    code, again, err = manage("kms-keygen", "--stage", stage)
    assert code == 0 and again == out and "already names" in err
    assert kms.describe_key(KeyId=f"alias/chalice-alipay-{stage}")["KeyMetadata"]["Arn"] == metadata["Arn"]


def test_put_secret_and_check_with_a_kms_key(aws, env, kms_key, tmp_path):
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(kms_secret(Merchant(), kms_key[0])))
    code, out, err = manage("put-secret", "--file", str(path))
    assert code == 0 and "created secret" in out, err
    code, out, err = manage("check")
    assert code == 0 and f"app key in KMS {kms_key[0]} (a test signature verified)" in out, err


@pytest.mark.parametrize("changes,reason", [
    (lambda m, public: {"sign_type": "RSA"}, "sign_type must be RSA2"),
    (lambda m, public: {"alipay_public_key": keys.spki_base64(public)}, "app's own public key"),
])
def test_put_secret_and_check_refuse_a_bad_kms_secret(aws, env, kms_key, tmp_path, changes, reason):
    merchant = Merchant()
    secret = kms_secret(merchant, kms_key[0], **changes(merchant, kms_key[1]))
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(secret))
    code, _, err = manage("put-secret", "--file", str(path))
    assert code == 1 and reason in err
    aws["secretsmanager"].create_secret(Name=env["ALIPAY_SECRET_ID"], SecretString=json.dumps(secret))
    code, _, err = manage("check")
    assert code == 1 and reason in err


def test_check_names_a_kms_key_that_does_not_exist_or_cannot_sign(aws, env, kms, tmp_path):
    encrypting = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["Arn"]
    for key_id, reason in [(encrypting, "has KeyUsage ENCRYPT_DECRYPT, not SIGN_VERIFY"),
                           ("alias/chalice-alipay-nowhere", "NotFoundException")]:
        path = tmp_path / "secret.json"
        path.write_text(json.dumps(kms_secret(Merchant(), key_id)))
        code, _, err = manage("put-secret", "--file", str(path))
        assert code == 1 and reason in err, err
