"""manage.py as a merchant runs it: a subprocess pointed at the moto server by AWS_ENDPOINT_URL."""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from chalicelib.alipay import keys
from tests.integration.conftest import ROOT
from tests.support import Merchant


def manage(*args):
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=dict(os.environ),
                            capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout, result.stderr


def test_keygen_writes_the_pair_and_prints_the_public_key(tmp_path):
    code, out, _ = manage("keygen", "--out", str(tmp_path))
    assert code == 0
    private = keys.load_private_key((tmp_path / "app_private_key.pem").read_text())
    assert (tmp_path / "app_private_key.pem").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    public_line = (tmp_path / "app_public_key.txt").read_text().strip()
    assert public_line == out.strip() and "\n" not in public_line
    assert keys.same_key(keys.load_public_key(public_line), private)


def test_keygen_never_overwrites_a_private_key(tmp_path):
    assert manage("keygen", "--out", str(tmp_path))[0] == 0
    first = (tmp_path / "app_private_key.pem").read_text()
    code, _, err = manage("keygen", "--out", str(tmp_path))
    assert code == 1 and "exists" in err and (tmp_path / "app_private_key.pem").read_text() == first


def test_create_table_refuses_a_ttl_on_the_old_attribute_with_the_way_out(aws, env):
    os.environ["ORDERS_TABLE"] = table = "manage-old-ttl"
    assert manage("create-table")[0] == 0
    aws["dynamodb"].update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": False,
                                                                                   "AttributeName": "purge_at"})
    aws["dynamodb"].update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True,
                                                                                   "AttributeName": "expires_at"})
    code, _, err = manage("create-table")
    assert code == 1 and "expires_at" in err and "purge_at" in err


def test_token_prints_a_token_and_its_hash():
    code, out, _ = manage("token")
    answer = json.loads(out)
    assert code == 0 and hashlib.sha256(answer["token"].encode()).hexdigest() == answer["sha256"]


def test_create_table_is_idempotent_and_adds_what_is_missing(aws, env):
    table = "manage-table"
    os.environ["ORDERS_TABLE"] = table
    aws["dynamodb"].create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                 AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
                                 KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                            {"AttributeName": "sk", "KeyType": "RANGE"}])
    code, out, _ = manage("create-table")
    assert code == 0 and "added index due" in out and "enabled TTL" in out
    description = aws["dynamodb"].describe_table(TableName=table)["Table"]
    assert [i["IndexName"] for i in description["GlobalSecondaryIndexes"]] == ["due"]
    code, out, _ = manage("create-table")
    assert code == 0 and "up to date" in out
    os.environ["ORDERS_TABLE"] = "manage-fresh"
    code, out, _ = manage("create-table")
    assert code == 0 and "created table" in out


def test_put_secret_then_check(aws, env, tmp_path):
    merchant = Merchant()
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(merchant.secret))
    code, out, _ = manage("put-secret", "--file", str(path))
    assert code == 0 and "created secret" in out
    code, out, _ = manage("put-secret", "--file", str(path))
    assert code == 0 and "updated secret" in out
    code, out, _ = manage("check")
    assert code == 0 and "all well" in out and merchant.app_id in out
    assert "PRIVATE" not in out


@pytest.mark.parametrize("change,reason", [
    (lambda s: s.pop("app_id"), "app_id is missing"),
    (lambda s: s.update(app_private_key="nonsense!"), "not base64"),
    (lambda s: s.update(alipay_public_key=s["app_private_key"]), "private key"),
    (lambda s: s.update(api_tokens=["abc"]), "api_tokens"),
    (lambda s: s.pop("md5_key"), "partner and md5_key go together"),
])
def test_put_secret_refuses_invalid_secrets_with_the_reason(aws, env, tmp_path, change, reason):
    secret = Merchant().secret
    change(secret)
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(secret))
    code, _, err = manage("put-secret", "--file", str(path))
    assert code == 1 and reason in err
    assert "BEGIN" not in err  # the key itself is never echoed


def test_key_confusion_is_refused_by_put_secret_and_by_check(aws, env, tmp_path):
    merchant = Merchant()
    secret = dict(merchant.secret, alipay_public_key=keys.spki_base64(merchant.app_key))
    path = tmp_path / "secret.json"
    path.write_text(json.dumps(secret))
    code, _, err = manage("put-secret", "--file", str(path))
    assert code == 1 and "app's own public key" in err
    aws["secretsmanager"].create_secret(Name=env["ALIPAY_SECRET_ID"], SecretString=json.dumps(secret))
    code, _, err = manage("check")
    assert code == 1 and "app's own public key" in err


def test_check_without_a_secret_fails_with_the_reason(env):
    code, _, err = manage("check")
    assert code == 1 and "cannot read secret" in err
