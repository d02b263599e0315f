"""The whole local stack in Alipay's certificate mode, as `make run CERT_MODE=1` starts it: a
purchase, a refund, and a rotation of Alipay's certificate that the service refuses until the
operator downloads the new certificate, checks it against the root and writes it to the secret."""
import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from urllib.parse import urlencode

import boto3
import pytest
from cryptography import x509

from chalicelib.alipay import keys, money, signing
from chalicelib.orders import PAID
from devstack import APP_ID, ROOT, free_port
from localaws import aws_environment
from tests.e2e.conftest import Api

class RunningStack:
    """`devstack.py` with CERT_MODE=1 (what `make run CERT_MODE=1` runs) in its own process: its
    moto server must not share this process's moto backends with the session's stack."""

    def __init__(self, workdir):
        self.ports = {name: free_port() for name in ("PORT", "SANDBOX_PORT", "MOTO_PORT", "SHOP_PORT")}
        env = dict(os.environ, CERT_MODE="1", **{k: str(v) for k, v in self.ports.items()})
        # SECRET_TTL_SECONDS=0: the service reads the secret afresh, so a new certificate counts at once.
        env["SECRET_TTL_SECONDS"] = "0"
        self.process = subprocess.Popen([sys.executable, "devstack.py", "--workdir", str(workdir),
                                         "--time-factor", "0.002"], cwd=ROOT, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        lines, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        self.banner = "".join(lines)
        assert "Ctrl-C stops everything" in self.banner, self.banner
        urls = dict(re.findall(r"^\s+(API \(chalice local\)|Alipay sandbox|AWS \(moto server\))\s+(\S+)",
                               self.banner, re.M))
        self.api_url = urls["API (chalice local)"]
        self.sandbox_url = urls["Alipay sandbox"].rsplit("/gateway.do", 1)[0]
        self.moto_url = urls["AWS (moto server)"]
        self.token = re.search(r"API token\s+(\S+)", self.banner).group(1)
        self.env = dict(os.environ, **aws_environment(self.moto_url), ALIPAY_SECRET_ID="alipay/merchant")

    def stop(self):
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def cert_stack(tmp_path_factory):
    s = RunningStack(tmp_path_factory.mktemp("cert-stack"))
    yield s
    s.stop()


def secret(stack):
    sm = boto3.client("secretsmanager", endpoint_url=stack.moto_url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    return json.loads(sm.get_secret_value(SecretId=stack.env["ALIPAY_SECRET_ID"])["SecretString"])


def download_alipay_cert(api, current, alipay_cert_sn):
    """The operator's alipay.open.app.alipaycert.download, signed with the app key in cert mode.
    The SDKs trust the downloaded certificate by its chain to the root, not by the answer's sign."""
    params = {"app_id": APP_ID, "method": "alipay.open.app.alipaycert.download", "charset": "utf-8",
              "sign_type": "RSA2", "timestamp": money.beijing_timestamp(), "version": "1.0",
              "app_cert_sn": keys.cert_sn(keys.load_certificate(current["app_cert"])),
              "alipay_root_cert_sn": keys.root_cert_sn(current["alipay_root_cert"]),
              "biz_content": json.dumps({"alipay_cert_sn": alipay_cert_sn})}
    params["sign"] = signing.sign_params(params, keys.load_private_key(current["app_private_key"]))
    r = api.http.request("POST", api.stack.sandbox_url + "/gateway.do", body=urlencode(params),
                         headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"})
    node = json.loads(r.data)["alipay_open_app_alipaycert_download_response"]
    pem = base64.b64decode(node["alipay_cert_content"]).decode()
    roots = [x509.load_pem_x509_certificate(block.encode() + b"-----END CERTIFICATE-----\n")
             for block in current["alipay_root_cert"].split("-----END CERTIFICATE-----\n") if "BEGIN" in block]
    cert = x509.load_pem_x509_certificate(pem.encode())
    cert.verify_directly_issued_by(roots[-1])  # raises unless the root issued it
    assert keys.cert_sn(cert) == alipay_cert_sn
    return pem


def refund_notification_answers(api, no, count):
    """The merchant's answers to the refund notifications, once `count` of them were answered."""
    deadline = time.monotonic() + 15
    while True:
        notes = [n for n in api.sandbox_notifications(no) if n["label"] == "partial refund"]
        if (len(notes) >= count and all(n["attempts"] for n in notes)) or time.monotonic() > deadline:
            return [n["attempts"][-1]["body"] if n["attempts"] else None for n in notes]
        time.sleep(0.1)


def test_purchase_refund_and_alipay_certificate_rotation_in_cert_mode(cert_stack, tmp_path):
    api = Api(cert_stack)
    assert "certificate mode" in cert_stack.banner
    assert "alipay_public_key" not in secret(cert_stack) and secret(cert_stack)["alipay_cert"]

    order = api.create("page", total_amount="20.00")
    no = order["out_trade_no"]
    back = api.pay(api.open_cashier(order))
    assert api.get(back.headers["Location"]).status == 302  # the return verifies with the certificate's key
    assert api.wait_for(no, lambda o: o["status"] in PAID)["status"] == "TRADE_SUCCESS"

    status, refund = api.post(f"/orders/{no}/refunds", {"refund_amount": "5.00", "out_request_no": "CR1"})
    assert status == 201 and refund["status"] == "REFUND_SUCCESS", refund
    assert refund_notification_answers(api, no, 1) == ["success"]  # signed under the first certificate

    rotated = json.loads(api.http.request("POST", cert_stack.sandbox_url + "/sandbox/rotate_alipay_cert").data)
    status, refused = api.post(f"/orders/{no}/sync")
    assert status == 502 and refused["error"]["code"] == "gateway_error"  # signed under a certificate it lacks

    current = secret(cert_stack)
    new_secret = dict(current, alipay_cert=download_alipay_cert(api, current, rotated["alipay_cert_sn"]))
    secret_file = tmp_path / "secret.json"
    secret_file.write_text(json.dumps(new_secret))
    subprocess.run([sys.executable, "manage.py", "put-secret", "--file", str(secret_file)], cwd=ROOT,
                   env=dict(os.environ, **cert_stack.env), check=True, capture_output=True, timeout=60)

    status, synced = api.post(f"/orders/{no}/sync")
    assert status == 200 and synced["status"] == "TRADE_SUCCESS"
    status, second = api.post(f"/orders/{no}/refunds", {"refund_amount": "3.00", "out_request_no": "CR2"})
    # 202 when the call waits for Alipay's 3 s between refund calls of one trade (the worker sends it)
    assert status in (201, 202), second
    assert api.wait_for(no, lambda o: o["refunded_amount"] == "8.00")["refunded_amount"] == "8.00"
    # The refund's notification, signed with the new certificate's key, is accepted too.
    assert refund_notification_answers(api, no, 2) == ["success", "success"]
