import json
from urllib.parse import parse_qs, parse_qsl, urlparse

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


class ScriptedAlipay:
    """Alipay's OpenAPI gateway with answers scripted per method, signed with the merchant's Alipay
    key as Alipay signs them (§5.2). `script(method, *answers)`: each call takes the next answer, the
    last one repeats; an answer "drop" is a 504 with nothing done (the request never reached Alipay).
    `calls` keeps (method, biz_content exactly as sent)."""

    def __init__(self, merchant):
        self.merchant = merchant
        self.answers = {}
        self.calls = []
        self.fake = FakeServer(self._respond, "/gateway.do")
        self.url = self.fake.url

    def script(self, method, *answers):
        self.answers[method] = list(answers)

    def _respond(self, http_method, path, body):
        from chalicelib.alipay import signing
        params = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        method = params.get("method", "")
        self.calls.append((method, params.get("biz_content")))
        queue = self.answers.get(method) or [{"code": "40004", "msg": "Business Failed",
                                               "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(answer):
            answer = answer(json.loads(params.get("biz_content") or "{}"))
        if answer == "drop":
            return 504, b"Gateway Timeout", "text/plain", 0
        content = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
        sign = signing.rsa_sign(self.merchant.alipay_key, content.encode("utf-8"))
        node = method.replace(".", "_") + "_response"
        return 200, f'{{"{node}":{content},"sign":"{sign}"}}'.encode("utf-8"), "application/json;charset=utf-8", 0

    def close(self):
        self.fake.close()


def reconcile_pass(min_age=0):
    """One pass as the schedule runs it, then its queue drained into the app's worker as Lambda
    would: (pass summary, messages handled)."""
    import app
    import sqsdrain
    from chalicelib import settings
    from chalicelib.service import Backend, Context, reconcile
    summary = reconcile.run_pass(Context(Backend(), time_left=lambda: 60.0), min_age=min_age)
    return summary, sqsdrain.drain(settings.load().reconcile_queue, app.reconcile_worker, limit_seconds=30)


def refund_calls_allowed_again(aws, table, out_trade_no):
    """As if the 3 s between refund calls of one trade had passed (Alipay's spacing, §3.6)."""
    aws["dynamodb"].update_item(TableName=table, Key={"pk": {"S": f"ORDER#{out_trade_no}"}, "sk": {"S": "ORDER"}},
                                UpdateExpression="REMOVE refund_call_at")
