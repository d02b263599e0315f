"""Refund records and an order's refund arithmetic, as data. Pure: no storage, no HTTP.

A refund is a record of its own (contract "Refund outcomes"):

    REFUND_PENDING -> REFUND_SUCCESS | REFUND_FAILED        (both final)

Only a definite answer ends a refund. Everything the service learns about refunds (our request,
Alipay's answer, a notification, a refund query, a console refund) becomes one call below on a
`Ledger`, which returns the next ledger. The amounts an order shows are computed from the
ledger in one place (`Ledger.refunded`, `Ledger.remaining`), never accumulated report by report,
so a redelivered or reordered report cannot count a refund twice.
"""
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Optional

REFUND_PENDING, REFUND_SUCCESS, REFUND_FAILED = "REFUND_PENDING", "REFUND_SUCCESS", "REFUND_FAILED"
ZERO = Decimal("0")

# 40004 sub_codes that mean "this refund was not made and will not be" (contract "Refund
# outcomes"). ACQ.DISCORDANT_REPEAT_REQUEST is deliberately absent: that out_request_no already
# exists at Alipay, so money may have moved; the refund query settles it.
DEFINITE_REFUSALS = frozenset({
    "ACQ.TRADE_STATUS_ERROR", "ACQ.TRADE_NOT_ALLOW_REFUND", "ACQ.TRADE_HAS_FINISHED", "ACQ.TRADE_HAS_CLOSE",
    "ACQ.SELLER_BALANCE_NOT_ENOUGH", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "ACQ.REASON_TRADE_REFUND_FEE_ERR",
    "ACQ.TRADE_NOT_EXIST",
})

# What an answer to alipay.trade.refund means for the refund.
SUCCEEDED, FAILED, ASK_QUERY, UNKNOWN = "succeeded", "failed", "ask_query", "unknown"


def classify_refund_answer(code, sub_code, fund_change):
    """Alipay's answer to a refund call, once, in one place (protocol §3.6, contract).

    `code` None means there was no verifiable answer (timeout, 20000 twice, a bad signature).
    """
    if code == "10000":
        # code=10000 only says the request was accepted; fund_change=Y says money moved.
        return SUCCEEDED if fund_change == "Y" else ASK_QUERY
    if code == "40004" and sub_code in DEFINITE_REFUSALS:
        return FAILED
    return UNKNOWN


@dataclass(frozen=True)
class Refund:
    out_request_no: str
    amount: Optional[Decimal]      # None: a console refund whose amount no refund query told yet
    status: str
    ours: bool = True              # False: made outside this service (Alipay's console)
    sub_code: Optional[str] = None  # why Alipay refused it


class RefundRefused(ValueError):
    """A refund that may not be reserved: the order cannot give that much back."""


@dataclass(frozen=True)
class Ledger:
    """An order's refunds and the largest cumulative `refund_fee` Alipay reported (§3.2)."""
    total_amount: Decimal
    refunds: tuple = field(default_factory=tuple)
    reported_fee: Decimal = ZERO

    def get(self, out_request_no):
        return next((r for r in self.refunds if r.out_request_no == out_request_no), None)

    @property
    def succeeded(self):
        return sum((r.amount for r in self.refunds if r.status == REFUND_SUCCESS and r.amount is not None), ZERO)

    @property
    def pending(self):
        return sum((r.amount for r in self.refunds if r.status == REFUND_PENDING), ZERO)

    @property
    def refunded(self):
        """The larger of what Alipay reported and what our records add up to, never above the
        total: each refund is counted once, whichever way we heard of it."""
        return min(self.total_amount, max(self.reported_fee, self.succeeded))

    @property
    def remaining(self):
        """What may still be reserved: pending refunds hold their amount until settled."""
        return max(ZERO, self.total_amount - self.refunded - self.pending)

    @property
    def fully_refunded(self):
        return self.refunded >= self.total_amount

    @property
    def unsettled(self):
        """Refunds the reconciler must look at: pending ones, and console ones of unknown amount."""
        return tuple(r for r in self.refunds if r.status == REFUND_PENDING or r.amount is None)

    # ---- what can happen to a ledger: each returns the next ledger (the same one if nothing changes)

    def reserve(self, out_request_no, amount):
        """Our refund request, recorded pending before Alipay is called."""
        if self.get(out_request_no) is not None:
            raise ValueError(f"refund {out_request_no} exists")
        if amount > self.remaining:
            raise RefundRefused(f"{amount:.2f} is more than the {self.remaining:.2f} that remains refundable")
        return self._with(Refund(out_request_no, amount, REFUND_PENDING))

    def succeed(self, out_request_no, amount=None):
        """Alipay says this refund moved money (fund_change=Y, a refund query, a notification).
        A refund we never started is recorded as a console refund. Alipay's word on money wins over
        an earlier refusal of ours."""
        record = self.get(out_request_no)
        if record is None:
            return self._with(Refund(out_request_no, amount, REFUND_SUCCESS, ours=False))
        learned = record.amount if record.amount is not None else amount
        return self._with(replace(record, status=REFUND_SUCCESS, amount=learned, sub_code=None))

    def fail(self, out_request_no, sub_code):
        """A definite refusal: only a pending refund can fail, and failing releases its amount."""
        record = self.get(out_request_no)
        if record is None or record.status != REFUND_PENDING:
            return self
        return self._with(replace(record, status=REFUND_FAILED, sub_code=sub_code))

    def report_fee(self, refund_fee):
        """A cumulative refund_fee from a notification: it only ever raises what we know."""
        return replace(self, reported_fee=max(self.reported_fee, min(refund_fee, self.total_amount)))

    def _with(self, record):
        existing = self.get(record.out_request_no)
        if existing == record:
            return self
        if existing is None:
            return replace(self, refunds=self.refunds + (record,))
        return replace(self, refunds=tuple(record if r is existing else r for r in self.refunds))
