"""Protocol section: our signing and verification against the raw `cryptography` operation."""
import base64
import json
import pathlib
from decimal import Decimal

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from bench.timing import interleaved, summary
from chalicelib.alipay import keys, notify, pay, signing

VECTORS = pathlib.Path(__file__).resolve().parent.parent / "tests" / "vectors"


def run():
    print("== protocol (same key, same bytes; floor = the bare RSA operation)")
    key = keys.load_private_key((VECTORS / "node_app_private_key_pkcs1.pem").read_text())
    credentials = pay.AppCredentials(app_id="2021000122671080", private_key=key)
    biz = pay.trade_biz("app", "20240101000002", Decimal("88.88"), "测试商品 A+B", timeout_express="30m")

    def ours_sign():
        params = pay.pay_request(credentials, "app", biz, "https://example.com/alipay/notify")
        return pay.app_order_string(params)

    params = pay.pay_request(credentials, "app", biz, "https://example.com/alipay/notify")
    content = signing.canonical_string(params, signing.REQUEST_EXCLUDED).encode()

    def floor_sign():
        return key.sign(content, padding.PKCS1v15(), hashes.SHA256())

    summary("sign app order string", interleaved(ours_sign, floor_sign))

    # The real 25-field Alipay notification of the vectors, as the body Alipay posts.
    case = json.loads((VECTORS / "notify_v1_real.json").read_text())["cases"][0]
    fields = case["params"]
    alipay_key = keys.load_public_key((VECTORS / case["public_key_file"]).read_text())
    string = signing.canonical_string(fields, signing.NOTIFY_V1_EXCLUDED).encode()
    body = pay.form_encode(fields).encode()
    raw_signature = base64.b64decode(fields["sign"])

    def ours_verify():
        parsed, codec = notify.parse_form(body)
        signing.verify_params(parsed, [alipay_key], "RSA2", codec)

    def floor_verify():
        alipay_key.verify(raw_signature, string, padding.PKCS1v15(), hashes.SHA256())

    summary("parse + verify 25-field notification", interleaved(ours_verify, floor_verify))
