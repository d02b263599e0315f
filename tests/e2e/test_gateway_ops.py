"""Server-to-gateway operations against the local sandbox: QR, refunds, close, sync, app-result,
the reconciler and the return's query, through chalice local and the moto server."""
import datetime
import json
import os
import subprocess
import sys
import time

from chalicelib import settings
from chalicelib.orders import PAID
from chalicelib.service import Backend, Context, reconcile, utc_now
from devstack import APP_ID
from sandbox.trades import trade_id


def sandbox_trade(api, no):
    trades = json.loads(api.get(api.stack.sandbox_url + "/sandbox/trades").data)
    return trades[trade_id(APP_ID, no)]


def test_qr_order_is_paid_by_scanning(api):
    order = api.create("qr", total_amount="12.00")
    qr = order["payment"]["qr_code"]
    assert qr.startswith(api.stack.sandbox_url + "/qr/")
    again = api.post("/orders", {"product": "qr", "subject": "测试商品 A+B", "total_amount": "12.00",
                                 "out_trade_no": order["out_trade_no"]})
    assert again[0] == 200 and again[1]["payment"]["qr_code"] == qr  # stored, no second precreate
    assert api.get(qr).status == 200  # the buyer scans
    api.pay(qr.replace("/qr/", "/cashier/"))
    assert api.wait_for(order["out_trade_no"], lambda o: o["status"] in PAID)["status"] == "TRADE_SUCCESS"


def test_qr_precreate_failure_is_502_and_the_replay_tries_again(api):
    api.switch("alipay.trade.precreate", tamper=1)
    body = {"product": "qr", "subject": "s", "total_amount": "3.00", "out_trade_no": f"QR{time.time_ns()}"}
    status, answer = api.post("/orders", body)
    assert status == 502 and answer["error"]["code"] == "gateway_error"
    assert api.order(body["out_trade_no"])["status"] == "WAIT_BUYER_PAY"  # stored, waiting, no QR
    status, answer = api.post("/orders", body)
    assert status == 200 and answer["payment"]["qr_code"]


def test_partial_refunds_twice_then_the_rest(api):
    no = api.paid_order("50.00")
    status, first = api.post(f"/orders/{no}/refunds", {"refund_amount": "10.00", "out_request_no": "R1"})
    assert status == 201 and first["status"] == "REFUND_SUCCESS" and first["order"]["refunded_amount"] == "10.00", first
    assert api.post(f"/orders/{no}/refunds", {"refund_amount": "10.00", "out_request_no": "R1"})[0] == 200
    status, conflict = api.post(f"/orders/{no}/refunds", {"refund_amount": "11.00", "out_request_no": "R1"})
    assert status == 409 and conflict["error"]["code"] == "idempotency_conflict"
    # Within 3 s of R1's call, Alipay's spacing defers R2's call to the worker's queue (202); on a
    # slow machine it may be made at once (201). Either way R2's 15.00 is reserved or refunded.
    status, second = api.post(f"/orders/{no}/refunds", {"refund_amount": "15.00", "out_request_no": "R2"})
    assert (status, second["status"]) in ((202, "REFUND_PENDING"), (201, "REFUND_SUCCESS")), second
    status, too_much = api.post(f"/orders/{no}/refunds", {"refund_amount": "25.01"})
    assert status == 422 and too_much["error"]["code"] == "refund_not_allowed"
    api.wait_for(no, lambda o: o["refunded_amount"] == "25.00")  # the worker made R2's call, 3 s later
    status, last = api.post(f"/orders/{no}/refunds", {"refund_amount": "25.00", "out_request_no": "R3"})
    assert status in (201, 202)
    api.wait_for(no, lambda o: o["status"] == "TRADE_CLOSED")
    api.wait_delivered(no, 4)  # payment + three refund notifications, each applied at most once
    final = api.order(no)
    assert final["status"] == "TRADE_CLOSED" and final["refunded_amount"] == "50.00"
    assert [(r["out_request_no"], r["refund_amount"], r["status"]) for r in final["refunds"]] == [
        ("R1", "10.00", "REFUND_SUCCESS"), ("R2", "15.00", "REFUND_SUCCESS"), ("R3", "25.00", "REFUND_SUCCESS")]
    refund_events = [e for e in api.events(no) if e["type"] == "refund"]
    assert len(refund_events) == 3
    assert sandbox_trade(api, no)["refund_fee"] == "50.00"


def test_refund_of_an_unpaid_order_is_422_and_changes_nothing(api):
    order = api.create("page", total_amount="5.00")
    status, answer = api.post(f"/orders/{order['out_trade_no']}/refunds", {"refund_amount": "1.00"})
    assert status == 422 and answer["error"]["code"] == "refund_not_allowed"
    assert api.order(order["out_trade_no"])["refunds"] == []


def test_refund_retried_after_a_timeout_is_not_paid_twice(api):
    no = api.paid_order("20.00")
    api.trigger("never_sent", no)  # the refund's notification must not settle it for us
    api.switch("alipay.trade.refund", delay_count=1, delay_seconds=3)  # done at Alipay, answered too late
    status, pending = api.post(f"/orders/{no}/refunds", {"refund_amount": "5.00", "out_request_no": "RT"})
    assert status == 202 and pending["status"] == "REFUND_PENDING"
    # The same refund again: sent again (after the 3 s spacing, by the worker), refunded once.
    status, retried = api.post(f"/orders/{no}/refunds", {"refund_amount": "5.00", "out_request_no": "RT"})
    assert status in (200, 202)
    api.wait_for(no, lambda o: o["refunds"][0]["status"] == "REFUND_SUCCESS")
    final = api.order(no)
    assert final["refunded_amount"] == "5.00" and len(final["refunds"]) == 1
    assert sandbox_trade(api, no)["refund_fee"] == "5.00"


def test_close_an_unpaid_order_and_one_alipay_never_saw(api):
    opened = api.create("page", total_amount="8.00")
    api.open_cashier(opened)
    status, view = api.post(f"/orders/{opened['out_trade_no']}/close")
    assert status == 200 and view["status"] == "TRADE_CLOSED"
    assert sandbox_trade(api, opened["out_trade_no"])["status"] == "TRADE_CLOSED"
    never = api.create("page", total_amount="8.00")
    status, view = api.post(f"/orders/{never['out_trade_no']}/close")
    assert status == 200 and view["status"] == "TRADE_CLOSED"  # ACQ.TRADE_NOT_EXIST: closed here
    paid = api.paid_order("8.00")
    status, answer = api.post(f"/orders/{paid}/close")
    assert status == 409 and answer["error"]["code"] == "order_not_closable"


def test_paid_after_local_close_reopens_with_an_anomaly(api):
    order = api.create("page", total_amount="8.00")
    no = order["out_trade_no"]
    api.open_cashier(order)
    api.post(f"/orders/{no}/close")
    assert sandbox_trade(api, no)["status"] == "TRADE_CLOSED"
    api.trigger("late_finished", no)  # Alipay's word on money wins: it reports the trade paid anyway
    final = api.wait_for(no, lambda o: o["status"] != "TRADE_CLOSED")
    assert final["status"] == "TRADE_FINISHED"
    assert [e["reason"] for e in api.events(no) if e["type"] == "anomaly"] == ["paid_after_local_close"]


def test_sync_after_a_notification_that_was_never_sent(api):
    order = api.create("page", total_amount="9.00")
    no = order["out_trade_no"]
    cashier = api.open_cashier(order)
    api.trigger("never_sent", no)
    api.pay(cashier)
    assert api.order(no)["status"] == "WAIT_BUYER_PAY"
    status, view = api.post(f"/orders/{no}/sync")
    assert status == 200 and view["status"] == "TRADE_SUCCESS" and view["trade_no"]
    assert [e["source"] for e in api.events(no)] == ["api", "query"]


def test_sync_with_an_unverifiable_answer_is_502_and_changes_nothing(api):
    order = api.create("page", total_amount="9.00")
    api.open_cashier(order)
    api.switch("alipay.trade.query", tamper=1)
    status, answer = api.post(f"/orders/{order['out_trade_no']}/sync")
    assert status == 502 and answer["error"]["code"] == "gateway_error"


def test_return_syncs_and_still_redirects_when_alipay_is_slow(api):
    order = api.create("page", total_amount="7.00")
    no = order["out_trade_no"]
    cashier = api.open_cashier(order)
    api.trigger("never_sent", no)
    api.switch("alipay.trade.query", delay_count=1, delay_seconds=6)
    back = api.pay(cashier)
    shown = api.get(back.headers["Location"])
    # Alipay has it paid, and its slow answer would say so: WAIT means we gave up and redirected.
    assert shown.status == 302 and shown.headers["Location"].endswith("status=WAIT_BUYER_PAY")
    again = api.get(back.headers["Location"])  # Alipay answers quickly now: the query finds it paid
    assert again.headers["Location"].endswith("status=TRADE_SUCCESS")
    assert [e["source"] for e in api.events(no)] == ["api", "return"]


def test_app_result_is_verified_but_never_marks_paid(api):
    order = api.create("app", total_amount="6.66")
    r = api.http.request("POST", api.stack.sandbox_url + "/app/pay", encode_multipart=False,
                         fields={"order_string": order["payment"]["order_string"]})
    result = json.loads(r.data)
    status, answer = api.post(f"/orders/{order['out_trade_no']}/app-result", result)
    assert status == 200 and answer["verified"] is True and answer["reason"] is None
    tampered = dict(result, result=result["result"].replace("6.66", "0.01"))
    assert api.post(f"/orders/{order['out_trade_no']}/app-result", tampered)[1]["verified"] is False
    other = api.create("app", total_amount="6.66")
    status, answer = api.post(f"/orders/{other['out_trade_no']}/app-result", result)
    assert answer["verified"] is False and answer["reason"] == "out_trade_no_mismatch"


def test_reconciler_fixes_a_never_notified_payment_and_closes_an_expired_order(api, stack):
    paid = api.create("page", total_amount="4.00")
    cashier = api.open_cashier(paid)
    api.trigger("never_sent", paid["out_trade_no"])
    api.pay(cashier)
    expired = api.create("wap", total_amount="4.00", timeout_express="1m")
    legacy = api.create("legacy", total_amount="4.00")
    ctx = Context(Backend(), settings.load(stack.env), clock=lambda: utc_now() + datetime.timedelta(minutes=2))
    summary, _ = reconcile.work(ctx, [(no, {"out_trade_no": no}) for no in (paid["out_trade_no"],
                                                                          expired["out_trade_no"])])
    assert summary["paid"] == 1 and summary["closed"] == 1
    assert api.order(paid["out_trade_no"])["status"] == "TRADE_SUCCESS"
    assert api.order(expired["out_trade_no"])["status"] == "TRADE_CLOSED"
    assert api.order(legacy["out_trade_no"])["status"] == "WAIT_BUYER_PAY"  # left alone
    assert [e["source"] for e in api.events(paid["out_trade_no"])] == ["api", "reconcile"]


def test_reconciler_settles_a_refund_of_unknown_outcome(api, stack):
    no = api.paid_order("30.00")
    api.trigger("never_sent", no)  # keep the refund notification from settling it: the reconciler must
    api.switch("alipay.trade.refund", delay_count=1, delay_seconds=3)
    assert api.post(f"/orders/{no}/refunds", {"refund_amount": "3.00", "out_request_no": "RU"})[0] == 202
    summary = json.loads(subprocess.run([sys.executable, "manage.py", "reconcile", "--min-age", "0"],
                                        cwd=str(settings.__file__).rsplit("/chalicelib", 1)[0],
                                        env=dict(os.environ, **stack.env), capture_output=True, text=True,
                                        check=True, timeout=60).stdout)
    final = api.order(no)
    assert final["refunds"][0]["status"] == "REFUND_SUCCESS" and final["refunded_amount"] == "3.00"
    assert summary["complete"] and summary["due"] >= 1 and summary["queued"] >= 1  # the pass, then its queue worked


def test_a_20000_answer_is_retried_once_with_the_same_request(api):
    order = api.create("page", total_amount="9.00")
    api.open_cashier(order)
    api.switch("alipay.trade.query", fail_20000=1)
    status, view = api.post(f"/orders/{order['out_trade_no']}/sync")
    assert status == 200 and view["status"] == "WAIT_BUYER_PAY"
    api.switch("alipay.trade.query", fail_20000=2)
    status, answer = api.post(f"/orders/{order['out_trade_no']}/sync")
    assert status == 502 and answer["error"]["code"] == "gateway_error"
