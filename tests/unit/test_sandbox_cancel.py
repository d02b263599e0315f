"""`alipay.trade.cancel` in the sandbox (protocol §3.7): an unpaid trade is closed, a paid one
refunded in full and closed, once; what Alipay does not know answers without an action."""
import datetime

import pytest

from tests.sandboxkit import Merchant

PAY, CANCEL, QUERY = "alipay.trade.pay", "alipay.trade.cancel", "alipay.trade.query"
REFUND, REFUND_QUERY = "alipay.trade.refund", "alipay.trade.fastpay.refund.query"
PAID_CODE, CONFIRMING_FOREVER = "280000000000000001", "282000000000000001"


@pytest.fixture
def merchant():
    merchant = Merchant()
    merchant.sandbox.clock.stop()  # the trades age only when a test advances their clock
    return merchant


def call(merchant, method, **biz):
    return merchant.answer(merchant.call(method, biz), method)


def pay(merchant, no, auth_code, total_amount="10.00"):
    return call(merchant, PAY, out_trade_no=no, scene="bar_code", auth_code=auth_code, subject="咖啡",
                total_amount=total_amount)


def test_cancel_closes_a_waiting_trade_without_a_notification(merchant):
    trade_no = pay(merchant, "C1", CONFIRMING_FOREVER)["trade_no"]
    answer = call(merchant, CANCEL, out_trade_no="C1")
    assert {k: answer[k] for k in ("code", "trade_no", "out_trade_no", "retry_flag", "action")} == {
        "code": "10000", "trade_no": trade_no, "out_trade_no": "C1", "retry_flag": "N", "action": "close"}
    assert call(merchant, QUERY, out_trade_no="C1")["trade_status"] == "TRADE_CLOSED"
    assert merchant.trade("C1")["closed_by"] == "cancel" and merchant.notifications("C1") == []
    assert pay(merchant, "C1", PAID_CODE)["sub_code"] == "ACQ.TRADE_HAS_CLOSE"  # a late re-scan cannot pay it


def test_a_cancelled_confirming_buyer_never_pays(merchant):
    pay(merchant, "C2", "281001000000000000")  # would pay after 10 s
    call(merchant, CANCEL, out_trade_no="C2")
    merchant.admin("/sandbox/clock", {"advance_seconds": 20})
    assert call(merchant, QUERY, out_trade_no="C2")["trade_status"] == "TRADE_CLOSED"
    assert merchant.notifications("C2") == []


def test_cancel_refunds_a_paid_trade_in_full_and_notifies_the_refund(merchant):
    pay(merchant, "C3", PAID_CODE, "12.50")
    answer = call(merchant, CANCEL, out_trade_no="C3")
    assert (answer["action"], answer["retry_flag"]) == ("refund", "N") and answer["gmt_refund_pay"]
    trade = merchant.trade("C3")
    assert (trade["status"], trade["refund_fee"], trade["closed_by"]) == ("TRADE_CLOSED", "12.50", "cancel")
    known = call(merchant, REFUND_QUERY, out_trade_no="C3", out_request_no="C3")
    assert (known["refund_status"], known["refund_amount"]) == ("REFUND_SUCCESS", "12.50")
    assert known["gmt_refund_pay"] == answer["gmt_refund_pay"]
    payment, refund = merchant.notifications("C3")
    assert payment["trade_status"] == "TRADE_SUCCESS"
    assert {k: refund[k] for k in ("trade_status", "refund_fee", "out_biz_no", "total_amount")} == {
        "trade_status": "TRADE_CLOSED", "refund_fee": "12.50", "out_biz_no": "C3", "total_amount": "12.50"}
    assert refund["gmt_refund"] and refund["gmt_close"] == trade["gmt_close"]


@pytest.mark.parametrize("auth_code,action,notes", [(CONFIRMING_FOREVER, "close", 0), (PAID_CODE, "refund", 2)])
def test_a_repeated_cancel_answers_the_same_and_does_nothing_more(merchant, auth_code, action, notes):
    pay(merchant, "C4", auth_code)
    first = call(merchant, CANCEL, out_trade_no="C4")
    again = call(merchant, CANCEL, out_trade_no="C4")
    assert (again["code"], again["action"], again["trade_no"]) == ("10000", action, first["trade_no"])
    assert again.get("gmt_refund_pay") == first.get("gmt_refund_pay")
    assert len(merchant.notifications("C4")) == notes
    assert merchant.trade("C4")["refund_fee"] == ("10.00" if action == "refund" else "0.00")


def test_cancel_by_trade_no_wins_over_out_trade_no(merchant):
    trade_no = pay(merchant, "C5", CONFIRMING_FOREVER)["trade_no"]
    pay(merchant, "C6", CONFIRMING_FOREVER)
    answer = call(merchant, CANCEL, trade_no=trade_no, out_trade_no="C6")
    assert (answer["out_trade_no"], answer["action"]) == ("C5", "close")
    assert merchant.trade("C6")["status"] == "WAIT_BUYER_PAY"


def test_cancel_of_an_unknown_trade_answers_without_action_or_trade_no(merchant):
    answer = call(merchant, CANCEL, out_trade_no="NOPE")
    assert (answer["code"], answer["out_trade_no"], answer["retry_flag"]) == ("10000", "NOPE", "N")
    assert "action" not in answer and "trade_no" not in answer
    merchant.pay_link("C7")  # a page trade the buyer never opened does not exist at Alipay yet (§3.5)
    assert "action" not in call(merchant, CANCEL, out_trade_no="C7")
    refused = call(merchant, CANCEL)
    assert (refused["sub_code"], refused["retry_flag"]) == ("ACQ.INVALID_PARAMETER", "N")


def test_cancel_of_a_trade_closed_otherwise_answers_close_and_changes_nothing(merchant):
    pay(merchant, "C8", "284000000000000001")  # declined
    assert call(merchant, CANCEL, out_trade_no="C8")["action"] == "close"
    assert merchant.trade("C8")["closed_by"] == "declined"


def test_cancel_works_for_other_products_too(merchant):
    merchant.paid("C9", "8.00", method="alipay.trade.wap.pay")
    assert call(merchant, CANCEL, out_trade_no="C9")["action"] == "refund"
    assert merchant.trade("C9")["refund_fee"] == "8.00"


def test_cancel_after_24_hours_is_refused(merchant):
    pay(merchant, "C10", PAID_CODE)
    merchant.admin("/sandbox/clock", {"advance_seconds": datetime.timedelta(hours=24, seconds=1).total_seconds()})
    refused = call(merchant, CANCEL, out_trade_no="C10")
    assert (refused["code"], refused["sub_code"], refused["retry_flag"]) == ("40004", "ACQ.TRADE_CANCEL_TIME_OUT", "N")
    assert merchant.trade("C10")["status"] == "TRADE_SUCCESS"


def test_cancel_after_a_refund_or_of_a_finished_trade_is_refused(merchant):
    pay(merchant, "C11", PAID_CODE)
    call(merchant, REFUND, out_trade_no="C11", refund_amount="1.00", out_request_no="C11R1")
    assert call(merchant, CANCEL, out_trade_no="C11")["sub_code"] == "ACQ.REASON_TRADE_REFUND_FEE_ERR"
    assert merchant.trade("C11")["refund_fee"] == "1.00"
    pay(merchant, "C12", PAID_CODE)
    merchant.trigger("late_finished", "C12")
    assert call(merchant, CANCEL, out_trade_no="C12")["sub_code"] == "ACQ.TRADE_HAS_FINISHED"


def test_the_retry_switch_answers_retry_flag_y_without_cancelling(merchant):
    pay(merchant, "C13", PAID_CODE)
    merchant.admin("/sandbox/switches", {"method": CANCEL, "retry_count": 1})
    retry = call(merchant, CANCEL, out_trade_no="C13")
    assert (retry["code"], retry["sub_code"], retry["retry_flag"]) == ("40004", "ACQ.SYSTEM_ERROR", "Y")
    assert merchant.trade("C13")["status"] == "TRADE_SUCCESS" and len(merchant.notifications("C13")) == 1
    assert call(merchant, CANCEL, out_trade_no="C13")["action"] == "refund"  # the retry succeeds


def test_a_cancel_done_yet_answered_as_a_failure_is_found_by_the_retry(merchant):
    pay(merchant, "C14", PAID_CODE)
    merchant.admin("/sandbox/switches", {"method": CANCEL, "answer_sub_code": "ACQ.SYSTEM_ERROR", "perform": True})
    assert call(merchant, CANCEL, out_trade_no="C14")["sub_code"] == "ACQ.SYSTEM_ERROR"
    assert call(merchant, CANCEL, out_trade_no="C14")["action"] == "refund"
    assert merchant.trade("C14")["refunds"]["C14"]["amount"] == "10.00"  # refunded once
    assert len(merchant.notifications("C14")) == 2
