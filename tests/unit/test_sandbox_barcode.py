"""The sandbox's in-store barcode payment (protocol §3.7): `alipay.trade.pay` with the test codes
of the README, each answer verified with the service's protocol code. The trades' clock is moved
with POST /sandbox/clock; nothing here waits for real time."""
import datetime
import json
import threading

import pytest
import urllib3
from werkzeug.serving import make_server

from chalicelib.alipay.errors import InvalidSignature
from sandbox.timing import parse_stamp, stamp
from tests.sandboxkit import Merchant

PAY, QUERY = "alipay.trade.pay", "alipay.trade.query"
PAID_CODE, CONFIRMING_FOREVER = "280000000000000001", "282000000000000001"


def pay_biz(no, auth_code, total_amount="10.00", **biz):
    """A pay request's biz_content; a None leaves the field out."""
    biz = dict({"out_trade_no": no, "scene": "bar_code", "auth_code": auth_code, "subject": "咖啡 A+B",
                "product_code": "FACE_TO_FACE_PAYMENT", "total_amount": total_amount}, **biz)
    return {k: v for k, v in biz.items() if v is not None}


def pay(merchant, no, auth_code, total_amount="10.00", **biz):
    return merchant.answer(merchant.call(PAY, pay_biz(no, auth_code, total_amount, **biz)), PAY)


def query(merchant, no):
    return merchant.answer(merchant.call(QUERY, {"out_trade_no": no}), QUERY)


def advance(merchant, seconds):
    return json.loads(merchant.admin("/sandbox/clock", {"advance_seconds": seconds}).data)


@pytest.fixture
def merchant():
    merchant = Merchant()
    merchant.sandbox.clock.stop()  # the trades age only when a test advances their clock
    return merchant


def test_a_paid_code_pays_at_once_and_notifies_the_payment(merchant):
    answer = pay(merchant, "B1", PAID_CODE, store_id="S01", terminal_id="T9")
    assert (answer["code"], answer["msg"]) == ("10000", "Success")
    trade = merchant.trade("B1")
    assert answer["trade_no"] == trade["trade_no"] and answer["gmt_payment"] == trade["gmt_payment"]
    assert answer["buyer_logon_id"] and answer["buyer_pay_amount"] == answer["total_amount"] == "10.00"
    assert answer["fund_bill_list"] == [{"fund_channel": "ALIPAYACCOUNT", "amount": "10.00"}]
    assert (trade["store_id"], trade["terminal_id"]) == ("S01", "T9")
    (note,) = merchant.notifications("B1")
    assert (note["trade_status"], note["trade_no"], note["total_amount"]) == ("TRADE_SUCCESS", trade["trade_no"], "10.00")
    assert "refund_fee" not in note
    assert query(merchant, "B1")["trade_status"] == "TRADE_SUCCESS"


def test_a_confirming_code_waits_its_seconds_on_the_trades_clock_then_pays(merchant):
    answer = pay(merchant, "B2", "281003000000000000")  # NNN = 030 seconds
    assert (answer["code"], answer["msg"]) == ("10003", " order success pay inprocess")
    assert answer["trade_no"] and answer["buyer_pay_amount"] == "0.00" and "gmt_payment" not in answer
    advance(merchant, 29)
    waiting = query(merchant, "B2")
    assert waiting["trade_status"] == "WAIT_BUYER_PAY" and "send_pay_date" not in waiting
    assert merchant.notifications("B2") == []
    advance(merchant, 1)
    paid = query(merchant, "B2")
    assert paid["trade_status"] == "TRADE_SUCCESS" and paid["trade_no"] == answer["trade_no"]
    created = merchant.trade("B2")["created"]
    assert paid["send_pay_date"] == stamp(parse_stamp(created) + datetime.timedelta(seconds=30))  # paid at its moment
    (note,) = merchant.notifications("B2")
    assert note["trade_status"] == "TRADE_SUCCESS" and note["gmt_payment"] == paid["send_pay_date"]


def test_the_clock_alone_pays_a_confirming_trade_and_sends_its_notification(merchant):
    pay(merchant, "B3", "281000100000000000")
    advance(merchant, 11)  # no query: the clock's own pass settles it, as the notifier loop does
    assert merchant.trade("B3")["status"] == "TRADE_SUCCESS"
    assert [n["trade_status"] for n in merchant.notifications("B3")] == ["TRADE_SUCCESS"]


def test_confirming_forever_waits_until_alipay_closes_it_after_three_minutes(merchant):
    assert pay(merchant, "B4", CONFIRMING_FOREVER)["code"] == "10003"
    advance(merchant, 179)
    assert query(merchant, "B4")["trade_status"] == "WAIT_BUYER_PAY"
    assert advance(merchant, 1)["closed"] == ["B4"]
    assert query(merchant, "B4")["trade_status"] == "TRADE_CLOSED"
    assert merchant.notifications("B4") == []  # 当面付 notifies TRADE_SUCCESS only (§3.5)


def test_a_shorter_timeout_express_closes_a_waiting_trade_sooner(merchant):
    pay(merchant, "B5", CONFIRMING_FOREVER, timeout_express="1m")
    advance(merchant, 61)
    assert query(merchant, "B5")["trade_status"] == "TRADE_CLOSED"


def test_a_confirmation_longer_than_the_auto_close_never_pays(merchant):
    pay(merchant, "B6", "281020000000000000")  # 200 s: the trade closes at 180 s
    advance(merchant, 250)
    assert query(merchant, "B6")["trade_status"] == "TRADE_CLOSED"
    assert merchant.notifications("B6") == []


def test_a_balance_decline_closes_the_trade_without_a_notification(merchant):
    answer = pay(merchant, "B7", "284000000000000001")
    assert (answer["code"], answer["sub_code"]) == ("40004", "ACQ.BUYER_BALANCE_NOT_ENOUGH")
    assert query(merchant, "B7")["trade_status"] == "TRADE_CLOSED"
    assert merchant.trade("B7")["closed_by"] == "declined" and merchant.notifications("B7") == []


@pytest.mark.parametrize("auth_code", ["284100000000000001", "28000000000000000x", "2800000000000001",
                                       "280000000000000000000000001", "180000000000000001", "289900000000000001",
                                       "", None])
def test_invalid_codes_are_refused_and_create_no_trade(merchant, auth_code):
    answer = pay(merchant, "B8", auth_code)
    assert (answer["code"], answer["sub_code"]) == ("40004", "ACQ.PAYMENT_AUTH_CODE_INVALID")
    assert query(merchant, "B8")["sub_code"] == "ACQ.TRADE_NOT_EXIST"


def test_a_lost_answer_leaves_the_trade_paid(merchant):
    response = merchant.call(PAY, pay_biz("B9", "285000000000000001"))
    assert response.status_code == 504  # werkzeug's test client has no socket to drop
    assert query(merchant, "B9")["trade_status"] == "TRADE_SUCCESS"
    assert [n["trade_status"] for n in merchant.notifications("B9")] == ["TRADE_SUCCESS"]


def test_a_lost_answer_drops_the_connection_over_http(merchant):
    server = make_server("127.0.0.1", 0, merchant.sandbox, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        params = merchant.signed(PAY, pay_biz("B10", "285100000000000001"))
        with pytest.raises(urllib3.exceptions.ProtocolError):
            urllib3.PoolManager(retries=False).request(
                "POST", f"http://127.0.0.1:{server.server_port}/gateway.do", fields=params, encode_multipart=False)
    finally:
        server.shutdown()
        server.server_close()
    assert query(merchant, "B10")["trade_status"] == "WAIT_BUYER_PAY"  # 2851: the buyer never confirms


@pytest.mark.parametrize("auth_code,code,sub_code,status", [
    ("286000000000000001", "40004", "ACQ.SYSTEM_ERROR", "TRADE_SUCCESS"),
    ("286100000000000001", "40004", "ACQ.SYSTEM_ERROR", "WAIT_BUYER_PAY"),
    ("287000000000000001", "20000", "isp.unknow-error", "TRADE_SUCCESS"),
])
def test_unknown_outcomes_answer_an_error_over_a_trade_that_exists(merchant, auth_code, code, sub_code, status):
    answer = pay(merchant, "B11", auth_code)
    assert (answer["code"], answer["sub_code"]) == (code, sub_code)
    assert query(merchant, "B11")["trade_status"] == status
    assert len(merchant.notifications("B11")) == (status == "TRADE_SUCCESS")


def test_a_replay_of_a_paid_trade_answers_its_payment_whatever_the_code(merchant):
    first = pay(merchant, "B12", PAID_CODE)
    again = pay(merchant, "B12", "284000000000000001")  # re-scanned: a declining code changes nothing
    assert again["code"] == "10000"
    assert {k: again[k] for k in ("trade_no", "gmt_payment")} == {k: first[k] for k in ("trade_no", "gmt_payment")}
    assert len(merchant.notifications("B12")) == 1


def test_a_replay_after_a_lost_answer_finds_the_payment(merchant):
    assert merchant.call(PAY, pay_biz("B13", "285000000000000001")).status_code == 504
    assert pay(merchant, "B13", "285000000000000001")["code"] == "10000"


def test_replays_of_waiting_closed_and_different_trades(merchant):
    waiting = pay(merchant, "B14", CONFIRMING_FOREVER)
    again = pay(merchant, "B14", PAID_CODE)  # still the same trade, still waiting
    assert (again["code"], again["trade_no"]) == ("10003", waiting["trade_no"])
    assert pay(merchant, "B14", PAID_CODE, total_amount="11.00")["sub_code"] == "ACQ.CONTEXT_INCONSISTENT"
    pay(merchant, "B15", "284000000000000001")
    assert pay(merchant, "B15", PAID_CODE)["sub_code"] == "ACQ.TRADE_HAS_CLOSE"
    merchant.opened("B16")  # a page trade with this out_trade_no
    assert pay(merchant, "B16", PAID_CODE)["sub_code"] == "ACQ.CONTEXT_INCONSISTENT"


def test_scene_and_product_code_are_checked(merchant):
    assert pay(merchant, "B17", PAID_CODE, scene="wave")["sub_code"] == "ACQ.INVALID_PARAMETER"
    assert pay(merchant, "B17", PAID_CODE, product_code="QUICK_WAP_WAY")["sub_code"] == "ACQ.INVALID_PARAMETER"
    assert pay(merchant, "B18", PAID_CODE, product_code=None)["code"] == "10000"  # product_code may be left out


def test_the_buyer_pays_scenario_pays_a_confirming_trade_now(merchant):
    pay(merchant, "B19", CONFIRMING_FOREVER)
    answer = json.loads(merchant.trigger("buyer_pays", "B19").data)
    assert answer["trade_status"] == "TRADE_SUCCESS" and len(answer["queued"]) == 1
    assert query(merchant, "B19")["trade_status"] == "TRADE_SUCCESS"
    refused = json.loads(merchant.trigger("buyer_pays", "B19").data)
    assert refused["sub_code"] == "ACQ.TRADE_HAS_SUCCESS"


def test_the_switches_work_on_the_pay_call(merchant):
    merchant.admin("/sandbox/switches", {"method": PAY, "fail_20000": 1})
    assert pay(merchant, "B20", PAID_CODE)["code"] == "20000"
    assert query(merchant, "B20")["sub_code"] == "ACQ.TRADE_NOT_EXIST"  # nothing was done
    merchant.admin("/sandbox/switches", {"method": PAY, "tamper": 1})
    tampered = merchant.call(PAY, pay_biz("B21", PAID_CODE))
    with pytest.raises(InvalidSignature):
        merchant.answer(tampered, PAY)
    assert query(merchant, "B21")["trade_status"] == "TRADE_SUCCESS"
