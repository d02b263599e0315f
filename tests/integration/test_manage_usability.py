"""manage.py as a newcomer meets it: sentences instead of tracebacks, and the secret built from
the key files keygen and the console give (no PEM escaped by hand)."""
import json
import os
import subprocess
import sys

import pytest

from chalicelib.alipay import keys
from chalicelib.merchant import parse_secret
from tests.integration.conftest import ROOT
from tests.support import new_key


def manage(*args, env=None):
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env or dict(os.environ),
                            capture_output=True, text=True, timeout=120)
    return result.returncode, result.stdout, result.stderr


def without_region(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_DEFAULT_REGION", "AWS_REGION")}
    return dict(env, AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))


@pytest.mark.parametrize("command", [["check"], ["create-table"], ["reconcile"], ["put-secret", "--file", "s.json"]])
def test_a_command_without_a_region_says_what_to_set(tmp_path, command):
    code, out, err = manage(*command, env=without_region(tmp_path))
    assert code == 1 and "Traceback" not in err
    assert f"{command[0]}: no AWS region is set: export AWS_DEFAULT_REGION" in err


def test_an_unreachable_aws_endpoint_is_a_sentence(tmp_path):
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y",
               AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_MAX_ATTEMPTS="1")
    code, _, err = manage("create-table", env=env)
    assert code == 1 and "Traceback" not in err
    assert "create-table: cannot reach AWS at http://127.0.0.1:9" in err


def test_a_missing_file_is_a_sentence(tmp_path):
    code, _, err = manage("put-secret", "--file", str(tmp_path / "nope.json"),
                          env=dict(os.environ, AWS_DEFAULT_REGION="us-east-1"))
    assert code == 1 and "Traceback" not in err and f"No such file or directory: {tmp_path / 'nope.json'}" in err


@pytest.fixture
def key_files(tmp_path):
    """What keygen writes, and Alipay's public key saved from the console as one line."""
    assert manage("keygen", "--out", str(tmp_path / "keys"))[0] == 0
    alipay_key = new_key()
    (tmp_path / "alipay_public_key.txt").write_text(keys.spki_base64(alipay_key) + "\n")
    return tmp_path / "keys" / "app_private_key.pem", tmp_path / "alipay_public_key.txt", alipay_key


def test_secret_from_files_writes_a_secret_that_put_secret_and_check_accept(aws, env, tmp_path, key_files):
    private, alipay_public, alipay_key = key_files
    token_hash = json.loads(manage("token")[1])["sha256"]
    out = tmp_path / "secret.json"
    code, printed, err = manage("secret-from-files", "--app-id", "2021000000000042", "--app-private-key", str(private),
                                "--alipay-public-key", str(alipay_public), "--token-hash", token_hash,
                                "--seller-id", "2088000000000042", "--out", str(out))
    assert code == 0, err
    assert f"put-secret --file {out}" in printed and "PRIVATE" not in printed
    assert out.stat().st_mode & 0o077 == 0  # the private key is readable by its owner only
    secret = json.loads(out.read_text())
    assert secret["app_private_key"] == private.read_text().strip()  # the PEM's newlines, escaped by json
    config = parse_secret(out.read_text())
    assert config.app_id == "2021000000000042" and tuple(config.api_token_hashes) == (token_hash,)
    assert keys.same_key(config.alipay_keys[0], alipay_key)
    assert manage("put-secret", "--file", str(out))[0] == 0
    code, printed, _ = manage("check")
    assert code == 0 and "all well" in printed


def test_secret_from_files_refuses_the_apps_own_public_key_as_alipays(tmp_path, key_files):
    private, _, _ = key_files
    code, printed, err = manage("secret-from-files", "--app-id", "2021000000000042", "--app-private-key", str(private),
                                "--alipay-public-key", str(tmp_path / "keys" / "app_public_key.txt"),
                                "--token-hash", "a" * 64, "--out", "-")
    assert code == 1 and printed == "" and "app's own public key" in err
    assert "BEGIN" not in err


def test_secret_from_files_takes_two_alipay_keys_while_alipay_rotates(tmp_path, key_files):
    private, alipay_public, _ = key_files
    second = tmp_path / "alipay_new.pem"
    second.write_text(keys.spki_base64(new_key()))
    code, printed, err = manage("secret-from-files", "--app-id", "2021000000000042", "--app-private-key", str(private),
                                "--alipay-public-key", str(second), "--alipay-public-key", str(alipay_public),
                                "--token-hash", "b" * 64, "--out", "-")
    assert code == 0, err
    assert len(parse_secret(printed).alipay_keys) == 2
