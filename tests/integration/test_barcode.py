"""In-store barcode payments (contract "In-store barcode payments"; protocol §3.7): every row of
the contract's table, the lost answer, a payment during polling, a cancel that refunds, a late
payment after a decline or a cancel, replays. Alipay is a scripted gateway signing its answers;
AWS is the moto server (DynamoDB, SQS)."""
import json

import pytest

import app
import sqsdrain
from chalicelib import settings
from chalicelib.service import Backend, Context, lifecycle, reconcile
from tests.integration.helpers import events, get_order, notify

CODE = "283901234567890123"
PAY = "alipay.trade.pay"


def paid(no, amount="12.00"):
    return {"code": "10000", "msg": "Success", "out_trade_no": no, "trade_no": "2026BAR", "total_amount": amount,
            "buyer_user_id": "2088102177846880", "gmt_payment": "2026-12-01 10:00:00",
            "fund_bill_list": [{"fund_channel": "ALIPAYACCOUNT", "amount": amount}]}


def declined(sub_code="ACQ.BUYER_BALANCE_NOT_ENOUGH"):
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": "买家余额不足"}


CONFIRMING = {"code": "10003", "msg": " order success pay inprocess", "sub_msg": "等待用户付款"}
WAITING = {"code": "10000", "msg": "Success", "trade_status": "WAIT_BUYER_PAY", "total_amount": "12.00"}


def buy(client, merchant, no, auth_code=CODE, **extra):
    body = {"product": "barcode", "subject": "咖啡", "total_amount": "12.00", "out_trade_no": no,
            "auth_code": auth_code, "store_id": "S001", "terminal_id": "T-9", **extra}
    r = client.http.post("/orders", headers={**merchant.auth, "Content-Type": "application/json"}, body=json.dumps(body))
    return r.status_code, json.loads(r.body)


def query_answer(no, status):
    answer = {"code": "10000", "msg": "Success", "out_trade_no": no, "trade_no": "2026BAR", "trade_status": status,
              "total_amount": "12.00"}
    if status == "TRADE_SUCCESS":
        answer["send_pay_date"] = "2026-12-01 10:00:05"
    return answer


def methods(alipay):
    return [method for method, _ in alipay.calls]


def poll_now(no, until_offset=-1.0):
    ctx = Context(Backend(), time_left=lambda: 60.0)
    return reconcile.poll(ctx, no, ctx.now_epoch() + until_offset, cancel=True)


def test_paid_at_once_is_201_and_the_code_is_never_stored_or_logged(client, merchant, alipay, aws, env, caplog):
    alipay.script(PAY, paid("BAR1"))
    status, order = buy(client, merchant, "BAR1")
    assert status == 201 and order["status"] == "TRADE_SUCCESS" and order["trade_no"] == "2026BAR"
    assert [(e["source"], e["type"], e.get("to")) for e in events(client, merchant, "BAR1")] == [
        ("api", "created", None), ("pay", "transition", "TRADE_SUCCESS")]
    sent = json.loads(alipay.calls[0][1])
    assert sent["auth_code"] == CODE and sent["scene"] == "bar_code" and sent["product_code"] == "FACE_TO_FACE_PAYMENT"
    assert (sent["store_id"], sent["terminal_id"]) == ("S001", "T-9")
    table = json.dumps(aws["dynamodb"].scan(TableName=env["ORDERS_TABLE"])["Items"])
    assert CODE not in table and CODE not in caplog.text and CODE[-4:] in caplog.text


@pytest.mark.parametrize("answer", [CONFIRMING, "drop", {"code": "20000", "msg": "Service Currently Unavailable",
                                                          "sub_code": "ACQ.SYSTEM_ERROR"},
                                    declined("ACQ.SYSTEM_ERROR")], ids=["10003", "timeout", "20000", "unknown-40004"])
def test_an_open_outcome_is_202_and_polled(client, merchant, alipay, answer):
    alipay.script(PAY, answer)
    status, order = buy(client, merchant, "BAROPEN")
    assert status == 202 and order["status"] == "WAIT_BUYER_PAY"
    assert sqsdrain.pending(settings.load().poll_queue) == 1  # the fast lane has it


@pytest.mark.parametrize("code", ["40001", "40002", "40006"])
def test_a_request_alipay_did_not_process_is_502_closed_and_not_polled(client, merchant, alipay, code):
    alipay.script(PAY, {"code": code, "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature"})
    status, answer = buy(client, merchant, "BARNP")
    assert status == 502 and answer["error"]["code"] == "gateway_error"
    assert get_order(client, merchant, "BARNP")[1]["status"] == "TRADE_CLOSED"
    assert sqsdrain.pending(settings.load().poll_queue) == 0


def test_a_decline_is_422_with_alipays_reason_and_closes_the_order(client, merchant, alipay):
    alipay.script(PAY, declined())
    status, answer = buy(client, merchant, "BARDEC")
    assert status == 422 and answer["error"]["code"] == "payment_declined"
    assert answer["error"]["sub_code"] == "ACQ.BUYER_BALANCE_NOT_ENOUGH" and answer["error"]["sub_msg"] == "买家余额不足"
    trail = events(client, merchant, "BARDEC")
    assert (trail[-1]["to"], trail[-1]["reason"]) == ("TRADE_CLOSED", "ACQ.BUYER_BALANCE_NOT_ENOUGH")
    # A replay, even with the code scanned again: the order as it stands, no second payment.
    status, again = buy(client, merchant, "BARDEC", auth_code="289999999999999999")
    assert status == 200 and again["status"] == "TRADE_CLOSED" and methods(alipay) == [PAY]


def test_a_lost_answer_is_found_paid_by_polling_and_never_cancelled(client, merchant, alipay):
    alipay.script(PAY, "drop")
    assert buy(client, merchant, "BARLOST")[0] == 202
    alipay.script("alipay.trade.query", query_answer("BARLOST", "TRADE_SUCCESS"))
    assert sqsdrain.drain(settings.load().poll_queue, app.poll_worker) == 1
    assert get_order(client, merchant, "BARLOST")[1]["status"] == "TRADE_SUCCESS"
    assert "alipay.trade.cancel" not in methods(alipay)


def test_a_payment_notified_while_polling_means_no_cancel(client, merchant, alipay):
    alipay.script(PAY, CONFIRMING)
    assert buy(client, merchant, "BARNOTE")[0] == 202
    assert notify(client, merchant.notification("BARNOTE", "12.00"))[:2] == (200, "success")
    assert poll_now("BARNOTE") == "TRADE_SUCCESS"  # the time is up, yet paid: nothing is sent
    assert methods(alipay) == [PAY]


def test_still_unpaid_when_polling_ends_is_cancelled_once(client, merchant, alipay):
    alipay.script(PAY, CONFIRMING)
    assert buy(client, merchant, "BARCAN")[0] == 202
    alipay.script("alipay.trade.query", query_answer("BARCAN", "WAIT_BUYER_PAY"))
    alipay.script("alipay.trade.cancel", {"code": "10000", "msg": "Success", "out_trade_no": "BARCAN",
                                          "retry_flag": "N", "action": "close"})
    assert poll_now("BARCAN", until_offset=60) == "again"  # still within the polling time: asked again later
    assert poll_now("BARCAN") == "TRADE_CLOSED"
    assert poll_now("BARCAN") == "TRADE_CLOSED"  # a redelivered last message: nothing more
    assert methods(alipay) == [PAY, "alipay.trade.query", "alipay.trade.query", "alipay.trade.cancel"]
    # Alipay reports it paid after all (the buyer confirmed at the last second): Alipay's word wins.
    late = merchant.notification("BARCAN", "12.00")
    assert notify(client, late)[:2] == (200, "success")
    assert [e["reason"] for e in events(client, merchant, "BARCAN") if e["type"] == "anomaly"] == [
        "paid_after_local_close"]


def test_a_cancel_that_alipay_answers_with_a_refund_records_payment_refund_and_close_once(client, merchant, alipay):
    alipay.script(PAY, CONFIRMING)
    assert buy(client, merchant, "BARREF")[0] == 202
    alipay.script("alipay.trade.cancel", {"code": "10000", "msg": "Success", "out_trade_no": "BARREF",
                                          "retry_flag": "N", "action": "refund"})
    r = client.http.post("/orders/BARREF/cancel", headers=merchant.auth)
    order = json.loads(r.body)
    assert r.status_code == 200 and order["status"] == "TRADE_CLOSED" and order["refunded_amount"] == "12.00"
    assert [(x["out_request_no"], x["refund_amount"], x["status"]) for x in order["refunds"]] == [
        ("BARREF", "12.00", "REFUND_SUCCESS")]
    refund_note = merchant.notification("BARREF", "12.00", "TRADE_CLOSED", refund_fee="12.00", out_biz_no="BARREF",
                                        gmt_refund="2026-12-01 10:01:00", gmt_close="2026-12-01 10:01:00")
    assert notify(client, refund_note)[:2] == (200, "success")  # the refund's own notification: the same one
    trail = [(e["type"], e.get("to") or e.get("out_request_no")) for e in events(client, merchant, "BARREF")]
    assert trail == [("created", None), ("transition", "TRADE_SUCCESS"), ("refund", "BARREF"),
                     ("transition", "TRADE_CLOSED")]


def test_cancel_retries_on_retry_flag_and_a_refused_cancel_is_409(client, merchant, alipay, monkeypatch):
    monkeypatch.setattr(lifecycle, "CANCEL_RETRY_SECONDS", 0)
    for no in ("BARRT", "BAROLD"):
        alipay.script(PAY, CONFIRMING)
        assert buy(client, merchant, no)[0] == 202
    alipay.script("alipay.trade.cancel", {"code": "10000", "msg": "Success", "retry_flag": "Y"},
                  {"code": "10000", "msg": "Success", "retry_flag": "N", "action": "close"})
    r = client.http.post("/orders/BARRT/cancel", headers=merchant.auth)
    assert r.status_code == 200 and json.loads(r.body)["status"] == "TRADE_CLOSED"
    assert methods(alipay).count("alipay.trade.cancel") == 2
    alipay.script("alipay.trade.cancel", declined("ACQ.TRADE_CANCEL_TIME_OUT"))
    r = client.http.post("/orders/BAROLD/cancel", headers=merchant.auth)
    assert r.status_code == 409 and json.loads(r.body)["error"]["code"] == "order_not_closable"
    assert get_order(client, merchant, "BAROLD")[1]["status"] == "WAIT_BUYER_PAY"


def test_an_auth_code_is_digits_and_for_barcode_orders_only(client, merchant, alipay):
    for code in ("12345", "2839012345678901234567890", "28390123456789012a", None):
        status, answer = buy(client, merchant, "BARBAD", auth_code=code)
        assert status == 400 and answer["error"]["field"] == "auth_code"
    r = client.http.post("/orders", headers={**merchant.auth, "Content-Type": "application/json"}, body=json.dumps(
        {"product": "page", "subject": "s", "total_amount": "1.00", "auth_code": CODE}))
    assert r.status_code == 400 and alipay.calls == []
