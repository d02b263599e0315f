"""Unpaid trades close at their expiry (protocol §3.5): `timeout_express` from the trade's
creation, `time_expire` as an absolute Beijing time that wins when both are sent. The trades'
clock is moved forward with POST /sandbox/clock; nothing here waits for real time."""
import datetime
import json

import pytest

from chalicelib.alipay import money
from sandbox import timing
from tests.sandboxkit import Merchant

QUERY = "alipay.trade.query"


def query(merchant, no):
    return merchant.answer(merchant.call(QUERY, {"out_trade_no": no}), QUERY)


def advance(merchant, seconds):
    return json.loads(merchant.admin("/sandbox/clock", {"advance_seconds": seconds}).data)


def test_timeout_express_closes_an_unpaid_trade_at_its_expiry():
    merchant = Merchant()
    merchant.opened("E1", timeout_express="30m")
    advance(merchant, 29 * 60)
    assert query(merchant, "E1")["trade_status"] == "WAIT_BUYER_PAY"
    assert advance(merchant, 2 * 60)["closed"] == ["E1"]
    closed = query(merchant, "E1")
    assert closed["trade_status"] == "TRADE_CLOSED" and "send_pay_date" not in closed
    assert merchant.trade("E1")["closed_by"] == "timeout"


def test_time_expire_is_absolute_beijing_time_and_wins_over_timeout_express():
    merchant = Merchant()
    soon = money.beijing_timestamp(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5))
    merchant.opened("E2", timeout_express="2h", time_expire=soon)
    assert merchant.trade("E2")["expires_at"] == soon
    advance(merchant, 6 * 60)
    assert query(merchant, "E2")["trade_status"] == "TRADE_CLOSED"


def test_the_expiry_is_fixed_when_the_trade_is_created_and_a_late_link_is_refused():
    merchant = Merchant()
    merchant.pay_link("E3", timeout_express="10m")
    advance(merchant, 11 * 60)
    late = merchant.pay_link("E3", timeout_express="10m")  # the same link signed again later
    assert late.status_code == 400 and b"ACQ.TRADE_HAS_CLOSE" in late.data


@pytest.mark.parametrize("method,notified", [("alipay.trade.wap.pay", True), ("alipay.trade.page.pay", False)])
def test_a_timeout_close_is_notified_for_wap_and_not_for_page(method, notified):
    merchant = Merchant()
    merchant.opened("E4", method=method, timeout_express="1m")
    advance(merchant, 61)
    notes = merchant.notifications("E4")
    if not notified:
        assert notes == []
        return
    (note,) = notes
    assert note["trade_status"] == "TRADE_CLOSED" and note["gmt_close"] == merchant.trade("E4")["expires_at"]
    assert "refund_fee" not in note and "gmt_payment" not in note  # a timeout close, not a full refund (§3.6)


def test_a_paid_trade_never_times_out():
    merchant = Merchant()
    merchant.paid("E5", timeout_express="1m")
    advance(merchant, 120)
    assert query(merchant, "E5")["trade_status"] == "TRADE_SUCCESS"


@pytest.mark.parametrize("biz,expected", [
    ({"timeout_express": "90m"}, datetime.timedelta(minutes=90)),
    ({"timeout_express": "2h"}, datetime.timedelta(hours=2)),
    ({"timeout_express": "15d"}, datetime.timedelta(days=15)),
    ({}, datetime.timedelta(days=15)),
])
def test_timeout_express_units(biz, expected):
    created = datetime.datetime(2026, 11, 27, 13, 0, tzinfo=timing.BEIJING)
    assert timing.expiry(created, biz) - created == expected


def test_one_c_closes_at_midnight_beijing_and_bad_values_are_refused():
    created = datetime.datetime(2026, 11, 27, 23, 30, tzinfo=timing.BEIJING)
    assert timing.expiry(created, {"timeout_express": "1c"}) == datetime.datetime(2026, 11, 28, tzinfo=timing.BEIJING)
    for bad in ("0m", "1.5h", "16d", "30", "2c"):
        with pytest.raises(timing.BadExpiry):
            timing.expiry(created, {"timeout_express": bad})
    merchant = Merchant()
    refused = merchant.pay_link("E6", timeout_express="1.5h")
    assert b"ACQ.INVALID_PARAMETER" in refused.data


def test_the_expire_scenario_closes_now():
    merchant = Merchant()
    merchant.opened("E7", method="alipay.trade.wap.pay")
    answer = json.loads(merchant.trigger("expire", "E7").data)
    assert answer["trade_status"] == "TRADE_CLOSED" and len(answer["queued"]) == 1
