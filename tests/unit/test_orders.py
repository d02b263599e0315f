"""The state machine, edge by edge (contract "State machine"; protocol §3.5, §3.6)."""
from decimal import Decimal

import pytest

from chalicelib import orders
from chalicelib.orders import (TRADE_CLOSED, TRADE_FINISHED, TRADE_SUCCESS, WAIT_BUYER_PAY, Change, OrderState,
                               Refused, Report, Unchanged, decide)

TOTAL = Decimal("88.80")


def state(status, refunded="0", closed_locally=False):
    return OrderState(status=status, total_amount=TOTAL, refunded_amount=Decimal(refunded), closed_locally=closed_locally)


def report(status, amount="88.8", refund_fee=None):
    return Report(status, Decimal(amount), Decimal(refund_fee) if refund_fee else None, refund_fee is not None)


@pytest.mark.parametrize("start,to", [(WAIT_BUYER_PAY, TRADE_SUCCESS), (WAIT_BUYER_PAY, TRADE_FINISHED),
                                      (WAIT_BUYER_PAY, TRADE_CLOSED), (TRADE_SUCCESS, TRADE_FINISHED)])
def test_forward_edges_apply(start, to):
    assert decide(state(start), report(to)) == Change(start, to)


@pytest.mark.parametrize("start,to", [(TRADE_SUCCESS, WAIT_BUYER_PAY), (TRADE_FINISHED, TRADE_SUCCESS),
                                      (TRADE_FINISHED, TRADE_CLOSED), (TRADE_CLOSED, TRADE_SUCCESS),
                                      (TRADE_CLOSED, TRADE_FINISHED), (TRADE_FINISHED, WAIT_BUYER_PAY),
                                      (TRADE_CLOSED, WAIT_BUYER_PAY)])
def test_backward_or_out_of_terminal_is_stale(start, to):
    assert decide(state(start), report(to)) == Unchanged("stale")


@pytest.mark.parametrize("status", orders.STATUSES)
def test_repeat_is_a_duplicate(status):
    assert decide(state(status), report(status)) == Unchanged("duplicate")


def test_paid_status_without_refund_does_not_close_a_paid_order():
    assert decide(state(TRADE_SUCCESS), report(TRADE_CLOSED)) == Unchanged("stale")


@pytest.mark.parametrize("to", [TRADE_SUCCESS, TRADE_FINISHED])
def test_paid_after_local_close_reopens_with_an_anomaly(to):
    assert decide(state(TRADE_CLOSED, closed_locally=True), report(to)) == \
        Change(TRADE_CLOSED, to, anomalies=("paid_after_local_close",))


def test_amount_compared_as_decimal_and_mismatch_refused():
    assert isinstance(decide(state(WAIT_BUYER_PAY), report(TRADE_SUCCESS, "88.800")), Change)
    assert decide(state(WAIT_BUYER_PAY), report(TRADE_SUCCESS, "88.81")) == Refused("amount_mismatch")
    assert decide(None, report(TRADE_SUCCESS)) == Refused("unknown_order")


def test_partial_refund_keeps_success_and_full_refund_closes():
    assert decide(state(TRADE_SUCCESS), report(TRADE_SUCCESS, refund_fee="10.00")) == \
        Change(TRADE_SUCCESS, TRADE_SUCCESS)
    assert decide(state(TRADE_SUCCESS, refunded="10.00"), report(TRADE_CLOSED, refund_fee="88.80")) == \
        Change(TRADE_SUCCESS, TRADE_CLOSED)
    assert decide(state(TRADE_SUCCESS), report(TRADE_CLOSED)) == Unchanged("stale")  # a close is no refund


def test_refund_reports_not_above_what_the_order_shows_are_duplicates():
    # The same cumulative fee again, or an older smaller one arriving late: nothing changes.
    assert decide(state(TRADE_SUCCESS, refunded="25.00"), report(TRADE_SUCCESS, refund_fee="25.00")) == \
        Unchanged("duplicate")
    assert decide(state(TRADE_SUCCESS, refunded="25.00"), report(TRADE_SUCCESS, refund_fee="10.00")) == \
        Unchanged("duplicate")


def test_refund_beyond_the_total_or_on_an_unpaid_order():
    assert decide(state(TRADE_SUCCESS), report(TRADE_SUCCESS, refund_fee="88.81")) == Refused("refund_exceeds_total")
    assert decide(state(WAIT_BUYER_PAY), report(TRADE_SUCCESS, refund_fee="1.00")) == Unchanged("stale")


def test_a_refund_is_never_taken_for_a_second_payment():
    change = decide(state(TRADE_SUCCESS), report(TRADE_SUCCESS, refund_fee="1.00"))
    assert (change.from_status, change.to_status) == (TRADE_SUCCESS, TRADE_SUCCESS)


D = Decimal


def test_refunded_amount_is_the_larger_of_reported_and_our_successes_never_a_sum():
    start = orders.RefundTotals(refunded=D("0"), succeeded=D("0"), pending=D("10"))
    ours = orders.settle_refund(start, D("10"), was_pending=True, already_succeeded=False)
    assert ours == orders.RefundTotals(D("10"), D("10"), D("0"))
    # Alipay's notification of the same refund reports cumulative 10: nothing is added.
    assert orders.settle_refund(ours, D("10"), was_pending=False, already_succeeded=True,
                                reported_fee=D("10")) == ours
    # A refund made elsewhere (console) reported as cumulative 15: the report wins.
    console = orders.settle_refund(ours, D("5"), was_pending=False, already_succeeded=False, reported_fee=D("15"))
    assert console.refunded == D("15")
    # Reports are never summed: two reports of 15 leave 15.
    assert orders.settle_refund(console, D("0"), False, True, reported_fee=D("15")).refunded == D("15")


def test_a_failed_refund_releases_its_reservation_and_refunds_nothing():
    start = orders.RefundTotals(refunded=D("5"), succeeded=D("5"), pending=D("3"))
    assert orders.settle_refund(start, D("3"), was_pending=True, already_succeeded=False, failed=True) == \
        orders.RefundTotals(D("5"), D("5"), D("0"))


def test_likely_state_guesses_the_common_predecessor():
    assert orders.likely_state(report(TRADE_SUCCESS)).status == WAIT_BUYER_PAY
    assert orders.likely_state(report(TRADE_FINISHED)).status == TRADE_SUCCESS
    assert orders.likely_state(report(TRADE_CLOSED)).status == WAIT_BUYER_PAY
