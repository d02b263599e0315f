"""The local stack with the app key in KMS (`make run SIGNER=kms`): the secret holds no private key,
the sandbox has the KMS key's public key registered, and verifies everything the service signs
(pay links, gateway calls) exactly as Alipay would."""
import json
import re
import urllib.request

import boto3
import pytest

from devstack import Stack
from tests.e2e.conftest import Api
from tests.e2e.test_make_run import make_run

PAID = ("TRADE_SUCCESS", "TRADE_FINISHED")


@pytest.fixture(scope="module")
def kms_api(tmp_path_factory):
    stack = Stack(tmp_path_factory.mktemp("kms-stack"), time_factor=0.002, signer="kms").start()
    yield Api(stack)
    stack.stop()


def test_the_secret_names_a_kms_key_and_holds_no_private_key(kms_api):
    stack = kms_api.stack
    secret = json.loads(boto3.client("secretsmanager", endpoint_url=stack.moto.url)
                        .get_secret_value(SecretId="alipay/merchant")["SecretString"])
    assert "app_private_key" not in secret and stack.app_key is None
    assert secret["app_signer"]["kms_key_id"].startswith("arn:aws:kms:")


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


def test_make_run_with_signer_kms(tmp_path):
    with make_run(tmp_path, "SIGNER=kms") as (_, text):
        assert "App key              in KMS (moto), alias/chalice-alipay-local" in text, text
        api_url = re.search(r"API \(chalice local\)\s+(\S+)", text).group(1)
        token = re.search(r"API token\s+(\S+)", text).group(1)
        request = urllib.request.Request(api_url + "/orders", method="POST",
                                         data=json.dumps({"product": "page", "subject": "tea",
                                                          "total_amount": "1.00"}).encode(),
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            url = json.loads(response.read())["payment"]["url"]
        # The sandbox verifies the KMS signature before it sends the browser on to its cashier.
        with urllib.request.build_opener(NoRedirect).open(url, timeout=10) as response:
            assert response.status == 302 and "/cashier/" in response.headers["Location"]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

    def http_error_302(self, req, fp, code, msg, headers):
        return fp
