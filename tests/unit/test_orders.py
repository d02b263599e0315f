"""The state machine, edge by edge (contract "State machine"; protocol §3.5, §3.6)."""
from decimal import Decimal

import pytest

from chalicelib import orders
from chalicelib.orders import (TRADE_CLOSED, TRADE_FINISHED, TRADE_SUCCESS, WAIT_BUYER_PAY, Change, OrderState,
                               Refused, Report, Unchanged, decide)

TOTAL = Decimal("88.80")


def state(status, closed_locally=False):
    return OrderState(status=status, total_amount=TOTAL, closed_locally=closed_locally)


def report(status, amount="88.8"):
    return Report(status, Decimal(amount))


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


@pytest.mark.parametrize("status,unpaid", [(WAIT_BUYER_PAY, True), (TRADE_SUCCESS, False), (TRADE_FINISHED, False),
                                           (TRADE_CLOSED, False)])
def test_only_waiting_or_locally_closed_orders_count_as_unpaid(status, unpaid):
    assert orders.is_unpaid(state(status)) is unpaid
    assert orders.is_unpaid(state(TRADE_CLOSED, closed_locally=True))


def test_likely_state_guesses_the_common_predecessor():
    assert orders.likely_state(report(TRADE_SUCCESS)).status == WAIT_BUYER_PAY
    assert orders.likely_state(report(TRADE_FINISHED)).status == TRADE_SUCCESS
    assert orders.likely_state(report(TRADE_CLOSED)).status == WAIT_BUYER_PAY

