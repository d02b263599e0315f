"""Refund records and their arithmetic (contract "Refund outcomes"), against a model of Alipay.

The property test plays Alipay's side of one trade: our refunds (reserved, then processed or
refused), console refunds, notifications delivered in any order and again, fund_change answers
and refund queries, interleaved at random. Whatever the interleaving, the ledger never counts a
refund twice, never lowers refunded_amount, never shows more than Alipay refunded or than the
total, and ends equal to Alipay's cumulative refund_fee.
"""
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from chalicelib.refunds import (ASK_QUERY, DEFINITE_REFUSALS, FAILED, REFUND_FAILED, REFUND_PENDING, REFUND_SUCCESS,
                                SUCCEEDED, UNKNOWN, Ledger, RefundRefused, classify_refund_answer)

D = Decimal
TOTAL = D("100.00")


def test_a_second_report_of_the_same_refund_adds_nothing():
    ledger = Ledger(TOTAL).reserve("R1", D("10")).succeed("R1")
    again = ledger.report_fee(D("10")).succeed("R1")
    assert again.refunded == D("10") and again.succeeded == D("10")


def test_console_refund_notified_while_ours_is_pending_is_not_counted_twice():
    # Finding 2: ours (30) pending; console refunds 50; Alipay then processes ours (cumulative 80).
    ledger = Ledger(TOTAL).reserve("OURS", D("30")).report_fee(D("50")).succeed("CONSOLE")
    assert ledger.refunded == D("50") and ledger.pending == D("30") and ledger.remaining == D("20")
    ledger = ledger.succeed("OURS").report_fee(D("80"))
    assert ledger.refunded == D("80") and ledger.remaining == D("20")
    ledger = ledger.succeed("CONSOLE", D("50"))  # the refund query tells its amount
    assert ledger.refunded == D("80") and not ledger.fully_refunded


def test_a_definite_refusal_releases_the_reservation_and_is_final():
    ledger = Ledger(TOTAL).reserve("R1", D("60"))
    assert ledger.remaining == D("40")
    failed = ledger.fail("R1", "ACQ.SELLER_BALANCE_NOT_ENOUGH")
    assert failed.remaining == TOTAL and failed.get("R1").status == REFUND_FAILED
    assert failed.fail("R1", "ACQ.TRADE_STATUS_ERROR") is failed  # already final: nothing changes


def test_more_than_remains_is_refused_and_reserves_nothing():
    ledger = Ledger(TOTAL).reserve("R1", D("60"))
    with pytest.raises(RefundRefused, match=r"^40\.01 is more than the 40\.00 that remains refundable$"):
        ledger.reserve("R2", D("40.01"))
    full = ledger.reserve("R2", D("40"))
    assert full.remaining == D("0")
    with pytest.raises(RefundRefused, match=r"^1\.00 is more than the 0\.00 that"):  # amounts as money, always
        full.reserve("R3", D("1"))


@pytest.mark.parametrize("code,sub_code,fund_change,outcome", [
    ("10000", None, "Y", SUCCEEDED), ("10000", None, "N", ASK_QUERY), ("10000", None, None, ASK_QUERY),
    ("40004", "ACQ.SYSTEM_ERROR", None, UNKNOWN), ("40004", "ACQ.DISCORDANT_REPEAT_REQUEST", None, UNKNOWN),
    ("40004", "ACQ.SOMETHING_NEW", None, UNKNOWN), ("20000", "ACQ.SYSTEM_ERROR", None, UNKNOWN),
    ("40006", "isv.insufficient-isv-permissions", None, UNKNOWN), (None, None, None, UNKNOWN),
    *[("40004", code, None, FAILED) for code in sorted(DEFINITE_REFUSALS)],
])
def test_only_a_definite_answer_ends_a_refund(code, sub_code, fund_change, outcome):
    assert classify_refund_answer(code, sub_code, fund_change) == outcome


# ---- the model -------------------------------------------------------------------------------

amounts = st.integers(min_value=1, max_value=4000).map(lambda cents: D(cents) / 100)
actions = st.lists(st.tuples(st.sampled_from(["ours", "process", "refuse", "console", "deliver", "answer",
                                               "query"]), st.integers(0, 40), amounts), max_size=60)


class Alipay:
    """One trade at Alipay: what it refunded, and the notifications it sent (cumulative fees)."""

    def __init__(self):
        self.cumulative = D("0")
        self.done = {}            # out_request_no -> amount, in the order Alipay processed them
        self.notifications = []   # (refund_fee, out_biz_no)

    def process(self, no, amount):
        if no in self.done or self.cumulative + amount > TOTAL:
            return False
        self.done[no] = amount
        self.cumulative += amount
        self.notifications.append((self.cumulative, no))
        return True


@settings(max_examples=400, deadline=None)
@given(actions)
def test_any_interleaving_counts_each_refund_once_and_ends_at_alipays_refund_fee(steps):
    alipay, ledger, ours, seen = Alipay(), Ledger(TOTAL), [], D("0")
    for kind, index, amount in steps:
        if kind == "ours":
            no = f"R{len(ours)}"
            try:
                ledger = ledger.reserve(no, amount)
                ours.append(no)
            except RefundRefused:
                pass
        elif kind == "console":
            alipay.process(f"C{index}", amount)
        elif ours:
            no = ours[index % len(ours)]
            record = ledger.get(no)
            if kind == "process" and record.status == REFUND_PENDING:
                if not alipay.process(no, record.amount):  # over what Alipay still has: refused
                    ledger = ledger.fail(no, "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
            elif kind == "refuse" and no not in alipay.done:
                ledger = ledger.fail(no, "ACQ.SELLER_BALANCE_NOT_ENOUGH")
            elif kind == "answer" and no in alipay.done:  # fund_change=Y with the cumulative fee
                ledger = ledger.succeed(no).report_fee(alipay.cumulative)
            elif kind == "query" and no in alipay.done:
                ledger = ledger.succeed(no, alipay.done[no])
        if kind == "deliver" and alipay.notifications:
            fee, no = alipay.notifications[index % len(alipay.notifications)]
            ledger = ledger.report_fee(fee).succeed(no)
        assert ledger.refunded >= seen, "refunded_amount went down"
        assert ledger.refunded <= min(TOTAL, alipay.cumulative), "more refunded than Alipay did"
        assert ledger.succeeded <= alipay.cumulative, "a refund was counted twice"
        assert ledger.remaining >= 0
        seen = ledger.refunded
    for fee, no in alipay.notifications:  # in the end every notification arrives
        ledger = ledger.report_fee(fee).succeed(no)
    assert ledger.refunded == alipay.cumulative
    assert all(ledger.get(no).status == REFUND_SUCCESS for no in alipay.done)
