"""Money you can trust (issue "Money you can trust"): one test, or a few, per finding; each failed
on the code before refunds became records. Alipay is a scripted gateway whose answers are signed
with the merchant's Alipay key; AWS is the moto server."""
import datetime
import json
import os
import subprocess
import threading
from urllib.parse import parse_qsl, urlparse

import pytest

from chalicelib import store
from chalicelib.service import Backend, Context, create, utc_now
from tests.integration.helpers import (create_order, events, get_order, notify, reconcile_pass,
                                       refund_calls_allowed_again)

JSON = {"Content-Type": "application/json"}
SYSTEM_ERROR = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.SYSTEM_ERROR", "sub_msg": "系统错误"}
NO_REFUND_YET = {"code": "10000", "msg": "Success"}  # the refund query for a refund Alipay does not know


def refunded(fee, fund_change="Y"):
    return {"code": "10000", "msg": "Success", "fund_change": fund_change, "refund_fee": fee}


def refund_found(amount):
    return {"code": "10000", "msg": "Success", "refund_status": "REFUND_SUCCESS", "refund_amount": amount}


def query_answer(no, status, amount, paid=True):
    answer = {"code": "10000", "msg": "Success", "out_trade_no": no, "trade_no": "2026T1", "trade_status": status,
              "total_amount": amount}
    if paid:
        answer["send_pay_date"] = "2026-12-01 10:00:00"
    return answer


def post(client, merchant, path, body=None, **headers):
    r = client.http.post(path, headers={**merchant.auth, **JSON, **headers},
                         body=json.dumps(body) if body is not None else None)
    return r.status_code, json.loads(r.body)


def paid_order(client, merchant, total="100.00", **extra):
    order = create_order(client, merchant, total_amount=total, **extra)
    assert notify(client, merchant.notification(order["out_trade_no"], total))[:2] == (200, "success")
    return order["out_trade_no"]


def refund(client, merchant, no, amount, out_request_no):
    return post(client, merchant, f"/orders/{no}/refunds", {"refund_amount": amount, "out_request_no": out_request_no})


# ---- 1. an unknown outcome is never a failure --------------------------------------------------

def test_a_system_error_keeps_the_refund_pending_and_its_amount_reserved(client, merchant, alipay, aws, env):
    no = paid_order(client, merchant, "50.00")
    alipay.script("alipay.trade.refund", SYSTEM_ERROR)
    status, answer = refund(client, merchant, no, "50.00", "R1")
    assert status == 202 and answer["status"] == "REFUND_PENDING", answer
    status, answer = refund(client, merchant, no, "10.00", "R2")  # would refund twice if R1 went through
    assert status == 422 and answer["error"]["code"] == "refund_not_allowed"
    alipay.script("alipay.trade.refund", refunded("50.00"))
    refund_calls_allowed_again(aws, env["ORDERS_TABLE"], no)
    status, answer = refund(client, merchant, no, "50.00", "R1")  # the same refund again: settled
    assert status == 200 and answer["status"] == "REFUND_SUCCESS" and answer["order"]["status"] == "TRADE_CLOSED"
    sent = [biz for method, biz in alipay.calls if method == "alipay.trade.refund"]
    assert len(sent) == 2 and sent[0] == sent[1]  # byte for byte


def test_a_definite_refusal_fails_the_refund_and_releases_it_and_failed_is_final(client, merchant, alipay, aws, env):
    no = paid_order(client, merchant, "50.00")
    alipay.script("alipay.trade.refund", dict(SYSTEM_ERROR, sub_code="ACQ.SELLER_BALANCE_NOT_ENOUGH"))
    status, answer = refund(client, merchant, no, "50.00", "R1")
    assert status == 422 and answer["error"]["sub_code"] == "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    status, answer = refund(client, merchant, no, "50.00", "R1")  # failed is final: no second call
    assert status == 422 and answer["error"]["sub_code"] == "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    assert len([m for m, _ in alipay.calls if m == "alipay.trade.refund"]) == 1
    alipay.script("alipay.trade.refund", refunded("50.00"))
    refund_calls_allowed_again(aws, env["ORDERS_TABLE"], no)
    assert refund(client, merchant, no, "50.00", "R2")[0] == 201


def test_discordant_repeat_request_is_not_a_refusal(client, merchant, alipay):
    no = paid_order(client, merchant, "20.00")
    alipay.script("alipay.trade.refund", dict(SYSTEM_ERROR, sub_code="ACQ.DISCORDANT_REPEAT_REQUEST"))
    alipay.script("alipay.trade.fastpay.refund.query", refund_found("5.00"))
    assert refund(client, merchant, no, "5.00", "R1")[0] == 202
    reconcile_pass()
    assert get_order(client, merchant, no)[1]["refunded_amount"] == "5.00"


# ---- 2. a console refund notified while ours is pending ----------------------------------------

def test_a_console_refund_notified_while_ours_is_pending_is_counted_once(client, merchant, alipay, aws, env):
    no = paid_order(client, merchant, "100.00")
    alipay.script("alipay.trade.refund", refunded("30.00", fund_change="N"))
    alipay.script("alipay.trade.fastpay.refund.query", NO_REFUND_YET)
    assert refund(client, merchant, no, "30.00", "OURS")[0] == 202
    # Alipay processes ours (30) and a console refund (20): cumulative 50.
    console = merchant.notification(no, "100.00", refund_fee="50.00", gmt_refund="2026-12-01 10:05:00",
                                    out_biz_no="CONSOLE")
    assert notify(client, console)[:2] == (200, "success")
    _, view = get_order(client, merchant, no)
    assert view["refunded_amount"] == "50.00"
    amounts = {"OURS": "30.00", "CONSOLE": "20.00"}
    alipay.script("alipay.trade.fastpay.refund.query", lambda biz: refund_found(amounts[biz["out_request_no"]]))
    reconcile_pass()
    _, view = get_order(client, merchant, no)
    assert view["refunded_amount"] == "50.00" and view["status"] == "TRADE_SUCCESS"
    assert {(r["out_request_no"], r.get("refund_amount"), r["status"]) for r in view["refunds"]} == {
        ("OURS", "30.00", "REFUND_SUCCESS"), ("CONSOLE", "20.00", "REFUND_SUCCESS")}
    alipay.script("alipay.trade.refund", refunded("100.00"))
    refund_calls_allowed_again(aws, env["ORDERS_TABLE"], no)
    status, answer = refund(client, merchant, no, "50.00", "REST")  # what really remains
    assert status == 201 and answer["order"]["status"] == "TRADE_CLOSED" and answer["order"]["refunded_amount"] == "100.00"


# ---- 3. a refund that never reached Alipay ------------------------------------------------------

@pytest.mark.parametrize("lost", ["drop", {"code": "40006", "msg": "Insufficient Permissions",
                                           "sub_code": "isv.insufficient-isv-permissions"}])
def test_a_refund_alipay_never_saw_is_sent_again_with_the_same_request(client, merchant, alipay, lost, aws, env):
    no = paid_order(client, merchant, "40.00")
    alipay.script("alipay.trade.refund", lost)
    assert refund(client, merchant, no, "15.00", "LOST")[0] == 202
    alipay.script("alipay.trade.fastpay.refund.query", NO_REFUND_YET)
    alipay.script("alipay.trade.refund", refunded("15.00"))
    refund_calls_allowed_again(aws, env["ORDERS_TABLE"], no)
    reconcile_pass()
    _, view = get_order(client, merchant, no)
    assert view["refunded_amount"] == "15.00" and view["refunds"][0]["status"] == "REFUND_SUCCESS"
    sent = [biz for method, biz in alipay.calls if method == "alipay.trade.refund"]
    assert len(sent) == 2 and sent[0] == sent[1]


def test_a_resent_refund_refused_definitely_fails_and_releases_its_amount(client, merchant, alipay, aws, env):
    no = paid_order(client, merchant, "40.00")
    alipay.script("alipay.trade.refund", "drop")
    assert refund(client, merchant, no, "40.00", "LOST")[0] == 202
    alipay.script("alipay.trade.fastpay.refund.query", NO_REFUND_YET)
    alipay.script("alipay.trade.refund", dict(SYSTEM_ERROR, sub_code="ACQ.TRADE_NOT_ALLOW_REFUND"))
    refund_calls_allowed_again(aws, env["ORDERS_TABLE"], no)
    reconcile_pass()
    _, view = get_order(client, merchant, no)
    assert view["refunds"][0]["status"] == "REFUND_FAILED" and view["refunded_amount"] == "0.00"
    sent = len(alipay.calls)
    refund_calls_allowed_again(aws, env["ORDERS_TABLE"], no)
    assert reconcile_pass()[0]["due"] == 0 and len(alipay.calls) == sent  # failed is final: off the index


# ---- 4. DynamoDB's cancellations read by reason -------------------------------------------------

class Flaky:
    """A DynamoDB client that cancels the next `times` transactions for `reason`, then passes."""

    def __init__(self, real, reason, times):
        self.real, self.reason, self.times, self.calls = real, reason, times, 0

    def transact_write_items(self, **kwargs):
        self.calls += 1
        if self.times > 0:
            self.times -= 1
            from botocore.exceptions import ClientError
            raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                               "CancellationReasons": [{"Code": self.reason}, {"Code": "None"}]},
                              "TransactWriteItems")
        return self.real.transact_write_items(**kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


def flaky_context(reason, times):
    backend = Backend()
    flaky = Flaky(backend.client("dynamodb"), reason, times)
    backend._clients["dynamodb"] = flaky
    ctx = Context(backend)
    ctx.store.sleep = lambda seconds: None
    return ctx, flaky


def test_a_transaction_conflict_is_retried_not_taken_for_a_lost_race(merchant, env):
    ctx, flaky = flaky_context("TransactionConflict", 2)
    status, order = create.create_order(ctx, "a", {"product": "page", "subject": "s", "total_amount": "1.00"},
                                        "conflict-key", "https://shop.test")
    assert status == 201 and flaky.calls == 3
    assert ctx.store.get_order(order["out_trade_no"]) is not None


def test_throttling_backs_off_then_answers_unavailable(merchant, env):
    from chalicelib.errors import Unavailable
    ctx, flaky = flaky_context("ThrottlingError", 100)
    slept = []
    ctx.store.sleep = slept.append
    with pytest.raises(Unavailable):
        create.create_order(ctx, "a", {"product": "page", "subject": "s", "total_amount": "1.00"}, "k", None)
    assert flaky.calls == len(store.RETRY_DELAYS) + 1 and len(slept) == len(store.RETRY_DELAYS)
    assert all(later > 0 for later in slept)


def test_a_validation_error_is_a_500_with_a_request_id_and_no_retry(client, merchant, env):
    import app
    ctx, flaky = flaky_context("ValidationError", 100)
    previous, app._backend = app._backend, ctx.backend
    try:
        status, answer = post(client, merchant, "/orders", {"product": "page", "subject": "s", "total_amount": "1.00"},
                              **{"Idempotency-Key": "validation"})
    finally:
        app._backend = previous
    assert status == 500 and answer["error"]["code"] == "internal_error" and answer["error"]["request_id"]
    assert flaky.calls == 1


def test_concurrent_creates_with_one_key_give_one_201_and_the_same_order(merchant, env):
    backend, barrier, answers = Backend(), threading.Barrier(12), []

    def worker():
        barrier.wait()
        answers.append(create.create_order(Context(backend), "a", {"product": "app", "subject": "s",
                                                                   "total_amount": "3.00"}, "same-key", None))

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(status for status, _ in answers) == [200] * 11 + [201]
    assert len({view["out_trade_no"] for _, view in answers}) == 1


def test_a_notify_id_of_any_length_is_stored(client, merchant):
    order = create_order(client, merchant, total_amount="2.00")
    body = merchant.notification(order["out_trade_no"], "2.00", notify_id="n" * 2000)
    assert notify(client, body)[:2] == (200, "success")
    assert [e["notify_id"] for e in events(client, merchant, order["out_trade_no"]) if e["type"] == "transition"] == [
        "n" * 2000]


# ---- 5. expiry as data ------------------------------------------------------------------------

def biz_of(payment):
    return json.loads(dict(parse_qsl(urlparse(payment["url"]).query))["biz_content"])


def test_every_payment_carries_the_absolute_time_expire_in_beijing_time(client, merchant):
    order = create_order(client, merchant, total_amount="8.00", timeout_express="2h")
    created = datetime.datetime.strptime(order["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    expires = datetime.datetime.strptime(order["expires_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert expires - created == datetime.timedelta(hours=2)
    beijing = (expires + datetime.timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")
    assert biz_of(order["payment"])["time_expire"] == beijing


def test_a_replay_of_a_closed_order_offers_no_payment(client, merchant, alipay):
    create_order(client, merchant, total_amount="8.00", out_trade_no="CLOSED_REPLAY")
    alipay.script("alipay.trade.close", {"code": "10000", "msg": "Success", "out_trade_no": "CLOSED_REPLAY"})
    assert post(client, merchant, "/orders/CLOSED_REPLAY/close")[0] == 200
    status, again = post(client, merchant, "/orders", {"product": "page", "subject": "测试商品 A+B",
                                                       "total_amount": "8.00", "out_trade_no": "CLOSED_REPLAY"})
    assert status == 200 and again["status"] == "TRADE_CLOSED" and "payment" not in again


def test_a_replay_past_expiry_offers_no_payment(merchant, env):
    body = {"product": "wap", "subject": "s", "total_amount": "1.00", "timeout_express": "1m", "out_trade_no": "EXP1"}
    assert create.create_order(Context(Backend()), "a", body, None, None)[0] == 201
    later = Context(Backend(), clock=lambda: utc_now() + datetime.timedelta(minutes=2))
    status, view = create.create_order(later, "a", body, None, None)
    assert status == 200 and view["status"] == "WAIT_BUYER_PAY" and "payment" not in view


def test_no_order_item_carries_the_ttl_attribute(client, merchant, aws, env):
    for product in ("page", "app", "legacy"):
        create_order(client, merchant, product=product, total_amount="1.00")
    post(client, merchant, "/orders", {"product": "page", "subject": "s", "total_amount": "1.00"},
         **{"Idempotency-Key": "ttl-check"})
    ttl = aws["dynamodb"].describe_time_to_live(TableName=env["ORDERS_TABLE"])["TimeToLiveDescription"]
    items = aws["dynamodb"].scan(TableName=env["ORDERS_TABLE"])["Items"]
    orders_ = [item for item in items if item["sk"]["S"] == "ORDER"]
    assert len(orders_) == 4 and all(ttl["AttributeName"] not in item for item in orders_)
    assert any(ttl["AttributeName"] in item for item in items if item["sk"]["S"] == "IDEMPOTENCY")


# ---- 6. close of a trade Alipay closed already ----------------------------------------------------

def test_closing_an_order_alipay_already_closed_answers_200(client, merchant, alipay):
    order = create_order(client, merchant, total_amount="6.00")
    no = order["out_trade_no"]
    alipay.script("alipay.trade.close", dict(SYSTEM_ERROR, sub_code="ACQ.TRADE_STATUS_ERROR"))
    alipay.script("alipay.trade.query", query_answer(no, "TRADE_CLOSED", "6.00", paid=False))
    status, view = post(client, merchant, f"/orders/{no}/close")
    assert status == 200 and view["status"] == "TRADE_CLOSED"


# ---- 7. idempotency keys ---------------------------------------------------------------------------

def test_the_same_key_with_another_out_trade_no_is_a_conflict(client, merchant):
    body = {"product": "page", "subject": "s", "total_amount": "1.00", "out_trade_no": "KEY_FIRST"}
    assert post(client, merchant, "/orders", body, **{"Idempotency-Key": "k-7"})[0] == 201
    status, answer = post(client, merchant, "/orders", dict(body, out_trade_no="KEY_SECOND"), **{"Idempotency-Key": "k-7"})
    assert status == 409 and answer["error"]["code"] == "idempotency_conflict"
    assert get_order(client, merchant, "KEY_SECOND")[0] == 404


def test_a_retry_after_a_token_rotation_replays(client, merchant, aws, env):
    old_token = merchant.token
    merchant.token = "rotated-" + old_token
    import hashlib
    merchant.secret["api_tokens"].append(hashlib.sha256(merchant.token.encode()).hexdigest())
    merchant.put(aws["secretsmanager"], env["ALIPAY_SECRET_ID"])
    os.environ["SECRET_TTL_SECONDS"] = "0"
    body = {"product": "app", "subject": "s", "total_amount": "1.00"}
    first = client.http.post("/orders", headers={"Authorization": f"Bearer {old_token}", **JSON,
                                                 "Idempotency-Key": "rotation"}, body=json.dumps(body))
    status, again = post(client, merchant, "/orders", body, **{"Idempotency-Key": "rotation"})
    assert first.status_code == 201 and status == 200
    assert again["out_trade_no"] == json.loads(first.body)["out_trade_no"]


# ---- 8. reports that imply a missed step ------------------------------------------------------------

def test_a_refund_notification_for_a_waiting_order_records_the_payment_then_the_refund(client, merchant):
    order = create_order(client, merchant, total_amount="30.00")
    no = order["out_trade_no"]
    body = merchant.notification(no, "30.00", refund_fee="10.00", gmt_refund="2026-12-01 10:00:00", out_biz_no="C1")
    for _ in range(2):
        assert notify(client, body)[:2] == (200, "success")
    _, view = get_order(client, merchant, no)
    assert view["status"] == "TRADE_SUCCESS" and view["refunded_amount"] == "10.00"
    assert [(e["type"], e.get("to") or e.get("out_request_no")) for e in events(client, merchant, no)] == [
        ("created", None), ("transition", "TRADE_SUCCESS"), ("refund", "C1")]


def test_a_query_finding_a_paid_order_closed_records_the_full_refund(client, merchant, alipay):
    no = paid_order(client, merchant, "12.00")
    alipay.script("alipay.trade.query", query_answer(no, "TRADE_CLOSED", "12.00"))
    status, view = post(client, merchant, f"/orders/{no}/sync")
    assert status == 200 and view["status"] == "TRADE_CLOSED" and view["refunded_amount"] == "12.00"


def test_a_query_finding_a_waiting_order_closed_after_payment_records_both(client, merchant, alipay):
    no = create_order(client, merchant, total_amount="12.00")["out_trade_no"]
    alipay.script("alipay.trade.query", query_answer(no, "TRADE_CLOSED", "12.00"))
    status, view = post(client, merchant, f"/orders/{no}/sync")
    assert status == 200 and view["status"] == "TRADE_CLOSED" and view["refunded_amount"] == "12.00"
    assert [(e.get("from"), e.get("to")) for e in events(client, merchant, no) if e["type"] == "transition"] == [
        ("WAIT_BUYER_PAY", "TRADE_SUCCESS"), ("TRADE_SUCCESS", "TRADE_CLOSED")]


# ---- 9. hygiene -------------------------------------------------------------------------------------

def test_keys_pems_and_secrets_are_ignored_by_git():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for path in ("keys/app_private_key.pem", "app_private_key.pem", "secret.json", "secret-prod.json"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=root).returncode == 0, path
    assert subprocess.run(["git", "check-ignore", "-q", "tests/vectors/cr_public_key.pem"], cwd=root).returncode == 1


def test_a_503_names_neither_the_secret_nor_aws_error_codes(client, env):
    os.environ["ALIPAY_SECRET_ID"] = "secret/that-is-named"
    r = client.http.post("/orders", headers={"Authorization": "Bearer x", **JSON}, body="{}")
    text = r.body.decode()
    assert r.status_code == 503 and "that-is-named" not in text and "ResourceNotFound" not in text


def test_the_gateways_string_to_sign_is_neither_logged_nor_answered(client, merchant, alipay, caplog):
    no = create_order(client, merchant, total_amount="3.00")["out_trade_no"]
    leaked = "app_id=2021000000000001&biz_content=SECRET_STRING_TO_SIGN"
    alipay.script("alipay.trade.query", {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature",
                                         "sub_msg": f"验签出错，网关生成的验签字符串为：{leaked}"})
    status, answer = post(client, merchant, f"/orders/{no}/sync")
    assert status == 502 and "SECRET_STRING_TO_SIGN" not in json.dumps(answer)
    assert "SECRET_STRING_TO_SIGN" not in caplog.text


def test_event_items_carry_the_order_as_the_entry_left_it(client, merchant, alipay, aws, env):
    no = paid_order(client, merchant, "10.00")
    alipay.script("alipay.trade.refund", refunded("4.00"))
    assert refund(client, merchant, no, "4.00", "S1")[0] == 201
    items = aws["dynamodb"].query(TableName=env["ORDERS_TABLE"], KeyConditionExpression="pk = :pk",
                                  ExpressionAttributeValues={":pk": {"S": f"ORDER#{no}"}})["Items"]
    snapshots = sorted((int(i["event"]["M"]["seq"]["N"]), i["event"]["M"]["type"]["S"],
                        i["event"]["M"]["snapshot"]["M"]["status"]["S"],
                        i["event"]["M"]["snapshot"]["M"]["refunded_amount"]["S"])
                       for i in items if i["sk"]["S"].startswith("EVENT#"))
    assert snapshots == [(1, "transition", "TRADE_SUCCESS", "0.00"), (2, "refund", "TRADE_SUCCESS", "4.00")]
