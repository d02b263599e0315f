import json
from urllib.parse import parse_qs, urlparse

from tests.httpfake import FakeServer

FORM = "application/x-www-form-urlencoded"


def create_order(client, merchant, product="page", total_amount="88.80", **extra):
    body = {"product": product, "subject": "测试商品 A+B", "total_amount": total_amount, **extra}
    r = client.http.post("/orders", headers={**merchant.auth, "Content-Type": "application/json", "Host": "pay.shop.test"},
                         body=json.dumps(body))
    assert r.status_code == 201, r.body
    return json.loads(r.body)


def notify(client, body, content_type=FORM):
    r = client.http.post("/alipay/notify", headers={"Content-Type": content_type}, body=body)
    return r.status_code, r.body.decode(), r.headers.get("Content-Type", "")


def get_order(client, merchant, out_trade_no):
    r = client.http.get(f"/orders/{out_trade_no}", headers=merchant.auth)
    return r.status_code, json.loads(r.body)


def events(client, merchant, out_trade_no):
    r = client.http.get(f"/orders/{out_trade_no}/events", headers=merchant.auth)
    assert r.status_code == 200, r.body
    return json.loads(r.body)["events"]


class FakeMapi:
    """The legacy gateway's notify_verify: answers `true` once per notify_id it was told about."""

    def __init__(self):
        self.valid = set()
        self.calls = []
        self.fake = FakeServer(self._respond, "/gateway.do")
        self.url = self.fake.url

    def _respond(self, method, path, body):
        query = parse_qs(urlparse(path).query)
        notify_id = query.get("notify_id", [""])[0]
        self.calls.append(query)
        ok = query.get("service") == ["notify_verify"] and notify_id in self.valid
        self.valid.discard(notify_id)
        return 200, b"true" if ok else b"false", "text/plain", 0

    def close(self):
        self.fake.close()
