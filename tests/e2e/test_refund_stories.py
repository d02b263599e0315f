"""The three refund stories of "Money you can trust", through the local stack (`make run`'s
parts on free ports): the sandbox answering like Alipay on a bad day, `chalice local`, the
workers draining the reconcile queue, `manage.py reconcile` as an operator would run it."""
import json
import os
import pathlib
import subprocess
import sys

from devstack import APP_ID
from sandbox.trades import trade_id

ROOT = pathlib.Path(__file__).resolve().parents[2]
REFUND = "alipay.trade.refund"


def reconcile(stack):
    done = subprocess.run([sys.executable, "manage.py", "reconcile", "--min-age", "0"], cwd=ROOT,
                          env=dict(os.environ, **stack.env), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def refunds_at_alipay(api, no):
    trades = json.loads(api.get(api.stack.sandbox_url + "/sandbox/trades").data)
    return trades[trade_id(APP_ID, no)].get("refunds", {})


def test_a_refund_answered_system_error_that_went_through_is_counted_once(api, stack):
    no = api.paid_order("30.00")
    api.switch(REFUND, answer_count=1, answer_sub_code="ACQ.SYSTEM_ERROR", perform=True)  # done, answered as failed
    status, answer = api.post(f"/orders/{no}/refunds", {"refund_amount": "30.00", "out_request_no": "SYS1"})
    assert status == 202 and answer["status"] == "REFUND_PENDING"
    status, answer = api.post(f"/orders/{no}/refunds", {"refund_amount": "1.00", "out_request_no": "SYS2"})
    assert status == 422 and answer["error"]["code"] == "refund_not_allowed"  # SYS1's amount stays reserved
    reconcile(stack)
    final = api.wait_for(no, lambda o: o["status"] == "TRADE_CLOSED")
    assert final["refunded_amount"] == "30.00"
    assert [(r["out_request_no"], r["status"]) for r in final["refunds"]] == [("SYS1", "REFUND_SUCCESS")]
    assert list(refunds_at_alipay(api, no)) == ["SYS1"]  # the buyer was refunded once


def test_a_console_refund_while_ours_is_pending_and_ours_never_reached_alipay(api, stack):
    no = api.paid_order("50.00")
    api.switch(REFUND, answer_count=1, answer_sub_code="ACQ.SYSTEM_ERROR")  # refused before anything happened
    assert api.post(f"/orders/{no}/refunds", {"refund_amount": "20.00", "out_request_no": "OURS"})[0] == 202
    api.trigger("console_refund", no, amount="10.00", out_request_no="CONSOLE")
    api.wait_for(no, lambda o: any(r["out_request_no"] == "CONSOLE" for r in o["refunds"]))
    reconcile(stack)  # ours: unknown at Alipay, sent again; the console refund's amount learned
    final = api.wait_for(no, lambda o: all(r["status"] == "REFUND_SUCCESS" and r.get("refund_amount")
                                           for r in o["refunds"]) and o["refunded_amount"] == "30.00")
    assert {(r["out_request_no"], r["refund_amount"]) for r in final["refunds"]} == {("OURS", "20.00"),
                                                                                 ("CONSOLE", "10.00")}
    status, _ = api.post(f"/orders/{no}/refunds", {"refund_amount": "20.00", "out_request_no": "REST"})
    assert status in (201, 202)  # 202 when the resend a moment ago still holds the 3 s slot
    final = api.wait_for(no, lambda o: o["status"] == "TRADE_CLOSED")
    assert final["refunded_amount"] == "50.00"
    assert sorted(refunds_at_alipay(api, no)) == ["CONSOLE", "OURS", "REST"]


def test_a_refund_lost_on_the_way_is_sent_again_and_settles(api, stack):
    no = api.paid_order("40.00")
    api.switch(REFUND, lost_count=1, lost_as="drop")
    status, answer = api.post(f"/orders/{no}/refunds", {"refund_amount": "15.00", "out_request_no": "LOST"})
    assert status == 202 and refunds_at_alipay(api, no) == {}
    reconcile(stack)
    final = api.wait_for(no, lambda o: o["refunds"][0]["status"] == "REFUND_SUCCESS")
    assert final["refunded_amount"] == "15.00" and list(refunds_at_alipay(api, no)) == ["LOST"]
