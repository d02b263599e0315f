"""The sandbox in-process (werkzeug's test client), driven the way a merchant's server and a
buyer's browser drive Alipay. Requests are signed and answers verified with the service's
protocol code, so that each side checks the other."""
import json
from urllib.parse import parse_qsl, urlencode, urlparse

from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.test import Client

from chalicelib.alipay import gateway, keys, money, signing
from sandbox.server import Sandbox
from sandbox.trades import trade_id

APP_ID = "2021000122600001"
NOTIFY_URL = "http://127.0.0.1:9/alipay/notify"  # never delivered: no notifier thread runs here


class Merchant:
    def __init__(self, cert_mode=False, sandbox=None):
        self.sandbox = sandbox or Sandbox(None)
        self.client = Client(self.sandbox)
        self.app_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.registered = json.loads(self.admin("/sandbox/apps", {
            "app_id": APP_ID, "public_key": keys.spki_base64(self.app_key), "cert_mode": cert_mode}).data)
        self.cert_mode = cert_mode

    def admin(self, path, body):
        return self.client.post(path, json=body)

    def alipay_keys(self):
        if self.cert_mode:
            return [keys.load_certificate(json.loads(self.client.get("/sandbox/certs").data)["alipay_cert"])
                    .public_key()]
        return [keys.load_public_key(self.client.get("/sandbox/alipay_public_key").data.decode())]

    def signed(self, method, biz, charset="utf-8", **extra):
        params = {"app_id": APP_ID, "method": method, "charset": charset, "sign_type": "RSA2",
                  "timestamp": money.beijing_timestamp(), "version": "1.0", "notify_url": NOTIFY_URL,
                  "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":"))}
        if self.cert_mode:
            params["app_cert_sn"] = keys.cert_sn(keys.load_certificate(self.registered["app_cert"]))
            params["alipay_root_cert_sn"] = keys.root_cert_sn(self.registered["alipay_root_cert"])
        params.update(extra)
        params = {k: v for k, v in params.items() if v is not None}
        if "sign" not in params:
            params["sign"] = signing.sign_params(params, self.app_key, charset=charset)
        return params

    def call(self, method, biz, charset="utf-8", in_query=False, **extra):
        """POST to gateway.do; the raw response."""
        params = self.signed(method, biz, charset, **extra)
        encoded = urlencode(params, encoding=charset)
        if in_query:
            return self.client.post("/gateway.do?" + encoded)
        return self.client.post("/gateway.do", data=encoded,
                                content_type=f"application/x-www-form-urlencoded;charset={charset}")

    def answer(self, response, method, charset="utf-8"):
        """The verified fields of a signed answer."""
        return gateway.verify_response(response.data.decode(charset), method, self.alipay_keys(),
                                       charset=charset).fields

    def pay_link(self, out_trade_no, total_amount="10.00", method="alipay.trade.page.pay", return_url=None, **biz):
        code = {"alipay.trade.page.pay": "FAST_INSTANT_TRADE_PAY", "alipay.trade.wap.pay": "QUICK_WAP_WAY"}[method]
        params = self.signed(method, dict({"out_trade_no": out_trade_no, "total_amount": total_amount,
                                           "subject": "茶 A+B", "product_code": code}, **biz),
                             return_url=return_url)
        return self.client.get("/gateway.do?" + urlencode(params))

    def opened(self, out_trade_no, total_amount="10.00", **biz):
        """A trade the buyer opened at the cashier: it exists for query and close (§3.5)."""
        response = self.pay_link(out_trade_no, total_amount, **biz)
        assert response.status_code == 302, response.data
        assert self.client.get(response.headers["Location"]).status_code == 200
        return response.headers["Location"]

    def paid(self, out_trade_no, total_amount="10.00", **biz):
        cashier = self.opened(out_trade_no, total_amount, **biz)
        assert self.client.post(cashier + "/pay").status_code in (200, 302)
        return self.trade(out_trade_no)

    def trade(self, out_trade_no):
        return json.loads(self.client.get("/sandbox/trades").data)[trade_id(APP_ID, out_trade_no)]

    def notifications(self, out_trade_no):
        notes = json.loads(self.client.get("/sandbox/notifications").data)
        return [dict(parse_qsl(n["body"], encoding=n["content_type"].split("charset=")[-1]), label=n["label"])
                for n in notes if n["out_trade_no"] == out_trade_no]

    def trigger(self, scenario, out_trade_no, **options):
        return self.admin("/sandbox/trigger", {"scenario": scenario, "out_trade_no": out_trade_no, **options})


def query_of(location):
    return dict(parse_qsl(urlparse(location).query))
