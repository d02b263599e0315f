import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

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
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                query = parse_qs(urlparse(self.path).query)
                notify_id = query.get("notify_id", [""])[0]
                fake.calls.append(query)
                ok = query.get("service") == ["notify_verify"] and notify_id in fake.valid
                fake.valid.discard(notify_id)
                body = b"true" if ok else b"false"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/gateway.do"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
