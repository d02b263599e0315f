"""Orders and their state machine, as data. Pure: no storage, no HTTP, no Alipay parsing.

Alipay's own status names (protocol §3.5, contract "State machine"):

    WAIT_BUYER_PAY -> TRADE_SUCCESS -> TRADE_FINISHED
    WAIT_BUYER_PAY -> TRADE_FINISHED | TRADE_CLOSED
    TRADE_SUCCESS  -> TRADE_CLOSED          (full refund only)

TRADE_FINISHED and TRADE_CLOSED are terminal, with one exception because Alipay's word on money
wins over ours: an order *we* closed that Alipay reports paid moves to the paid status, with an
anomaly `paid_after_local_close`. A notification that would move backwards, or repeats what
was applied, changes nothing and is acknowledged.
"""
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Optional

WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
TRADE_SUCCESS = "TRADE_SUCCESS"
TRADE_FINISHED = "TRADE_FINISHED"
TRADE_CLOSED = "TRADE_CLOSED"
STATUSES = (WAIT_BUYER_PAY, TRADE_SUCCESS, TRADE_FINISHED, TRADE_CLOSED)
PAID = frozenset({TRADE_SUCCESS, TRADE_FINISHED})

# (from, to) -> what must be true of the change for the edge to apply.
EDGES = {
    (WAIT_BUYER_PAY, TRADE_SUCCESS): "payment",
    (WAIT_BUYER_PAY, TRADE_FINISHED): "payment",
    (WAIT_BUYER_PAY, TRADE_CLOSED): "close",
    (TRADE_SUCCESS, TRADE_FINISHED): "any",
    (TRADE_SUCCESS, TRADE_CLOSED): "full_refund",
    # Alipay reports paid what we closed ourselves (contract: paid_after_local_close).
    (TRADE_CLOSED, TRADE_SUCCESS): "paid_after_local_close",
    (TRADE_CLOSED, TRADE_FINISHED): "paid_after_local_close",
}

PRODUCTS = ("page", "wap", "app", "qr", "legacy", "barcode")

# When the reconciler asks Alipay about a waiting order, in seconds after its creation (contract,
# manage.py reconcile); and about a refund whose outcome is unknown, after it was recorded.
QUERY_BACKOFF = (120, 300, 900, 3600, 6 * 3600, 24 * 3600)
REFUND_BACKOFF = (60, 300, 900, 3600, 6 * 3600, 24 * 3600)


def next_check(since, now, backoff, deadline=None):
    """The next moment (epoch seconds) on `backoff` counted from `since` that is after `now`; past
    the last step, every last-step interval. Never later than `deadline`: an order stays on the
    reconciler's index until it is paid or closed, however long its timeout."""
    age = now - since
    step = next((s for s in backoff if s > age), None)
    at = since + step if step is not None else now + backoff[-1]
    return min(at, deadline) if deadline is not None else at


@dataclass(frozen=True)
class OrderState:
    """What the state machine needs to know of an order."""
    status: str
    total_amount: Decimal
    refunded_amount: Decimal = Decimal("0")  # pinned by version, like everything else here
    closed_locally: bool = False
    product: str = "page"
    version: int = 0          # changes applied so far; orders events that share a timestamp


@dataclass(frozen=True)
class Report:
    """What Alipay says about a trade's status, by notification or by query. Refunds are
    refunds.Ledger's business: a report that carries one never comes here."""
    trade_status: str
    total_amount: Optional[Decimal]


@dataclass(frozen=True)
class Change:
    """A transition to apply, plus anomalies."""
    from_status: str
    to_status: str
    anomalies: tuple = field(default_factory=tuple)


@dataclass(frozen=True)
class Unchanged:
    """A duplicate or stale report: acknowledge, change nothing."""
    reason: str


@dataclass(frozen=True)
class Refused:
    """A report that contradicts the order: record an anomaly, change nothing."""
    reason: str


def decide(order, report):
    """What a verified report does to an order: a Change, Unchanged or Refused."""
    if order is None:
        return Refused("unknown_order")
    if report.total_amount is None or report.total_amount != order.total_amount:
        return Refused("amount_mismatch")
    if report.trade_status not in STATUSES:
        return Refused("unknown_trade_status")
    edge = EDGES.get((order.status, report.trade_status))
    if edge in ("payment", "close", "any"):
        return Change(order.status, report.trade_status)
    if edge == "paid_after_local_close" and order.closed_locally:
        return Change(order.status, report.trade_status, anomalies=("paid_after_local_close",))
    return Unchanged("duplicate" if order.status == report.trade_status else "stale")


def is_unpaid(order):
    """Waiting, or closed by us before any payment: a report of a refund implies a payment we
    missed (contract, State machine)."""
    return order.status == WAIT_BUYER_PAY or (order.status == TRADE_CLOSED and order.closed_locally)


def likely_state(report, product="page"):
    """The state an order most likely has when this report arrives, for a write without a read.

    A payment most likely finds the order waiting; a finish most likely finds it paid. The write
    is conditioned on this guess, so a wrong guess costs a read and a retry, never a wrong state.
    """
    if report.trade_status == TRADE_FINISHED:
        return OrderState(status=TRADE_SUCCESS, total_amount=report.total_amount, product=product, version=1)
    return OrderState(status=WAIT_BUYER_PAY, total_amount=report.total_amount, product=product, version=0)
