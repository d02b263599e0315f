"""The local stack with the app key in KMS (`python devstack.py --signer kms`, `make run SIGNER=kms`):
the secret holds no private key, the sandbox has the KMS key's public key registered, and verifies
everything the service signs (pay links, gateway calls) exactly as Alipay would. The stack runs in a
process of its own: moto's state is per process, so a second stack inside the test process would
share, and overwrite, the session stack's secret."""
import json
import re
import sys
import types

import boto3
import pytest

from chalicelib.orders import PAID
from tests.e2e.conftest import Api
from tests.e2e.stacks import ROOT, local_stack, make_run

KMS_BANNER = "App key              in KMS (moto), alias/chalice-alipay-local"


def moto_secret(moto_url):
    secrets = boto3.client("secretsmanager", endpoint_url=moto_url, region_name="us-east-1",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    return json.loads(secrets.get_secret_value(SecretId="alipay/merchant")["SecretString"])


def printed(text, name):
    return re.search(rf"{name}\s+(\S+)", text).group(1)


@pytest.fixture(scope="module")
def kms_api(tmp_path_factory):
    # Run files outside the project: chalice local restarts on every change under it (traps.md).
    workdir = tmp_path_factory.mktemp("kms-stack")
    with local_stack([sys.executable, "devstack.py", "--signer", "kms", "--workdir", str(workdir),
                      "--time-factor", "0.002"], ROOT) as text:
        assert KMS_BANNER in text, text
        yield Api(types.SimpleNamespace(
            api_url=printed(text, r"API \(chalice local\)"), moto_url=printed(text, r"AWS \(moto server\)"),
            sandbox_url=printed(text, "Alipay sandbox").replace("/gateway.do", ""), token=printed(text, "API token")))


def test_make_run_signer_kms_keeps_the_app_key_in_kms(tmp_path):
    with make_run(tmp_path, "SIGNER=kms") as (_, text):
        assert KMS_BANNER in text, text
        secret = moto_secret(printed(text, r"AWS \(moto server\)"))
        assert "app_private_key" not in secret and secret["app_signer"]["kms_key_id"].startswith("arn:aws:kms:")


def test_a_purchase_signed_by_kms_is_verified_by_the_sandbox_and_paid(kms_api):
    order = kms_api.create("page")
    cashier = kms_api.open_cashier(order)  # the sandbox verified the KMS signature with the registered key
    back = kms_api.pay(cashier)
    assert back.status == 302 and kms_api.get(back.headers["Location"]).status == 302  # return verified
    final = kms_api.wait_for(order["out_trade_no"], lambda o: o["status"] != "WAIT_BUYER_PAY")
    assert final["status"] == "TRADE_SUCCESS" and final["trade_no"]


def test_gateway_calls_signed_by_kms_precreate_and_refund(kms_api):
    order = kms_api.create("qr", total_amount="12.00")  # alipay.trade.precreate, signed by KMS
    qr = order["payment"]["qr_code"]
    assert kms_api.get(qr).status == 200
    kms_api.pay(qr.replace("/qr/", "/cashier/"))
    assert kms_api.wait_for(order["out_trade_no"], lambda o: o["status"] in PAID)["status"] == "TRADE_SUCCESS"
    r = kms_api.http.request("POST", f"{kms_api.stack.api_url}/orders/{order['out_trade_no']}/refunds",
                             body=json.dumps({"refund_amount": "2.00"}),
                             headers={**kms_api.auth, "Content-Type": "application/json"})
    answer = json.loads(r.data)
    assert r.status == 201 and answer["status"] == "REFUND_SUCCESS", answer


def test_a_request_the_sandbox_does_not_accept_is_still_refused(kms_api):
    """The check is real: the sandbox refuses what the KMS key did not sign."""
    order = kms_api.create("page", total_amount="3.00")
    tampered = order["payment"]["url"].replace("3.00", "0.01")
    r = kms_api.get(tampered)
    assert r.status != 302 and "invalid-signature" in r.data.decode()
