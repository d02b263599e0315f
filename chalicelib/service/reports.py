"""Apply what Alipay reports about a trade (a verified notification, or a query's answer).

Nothing Alipay reports is acknowledged and then dropped (contract, State machine): a report that
implies a step we missed applies that step first. A refund reported for an order still waiting
(its payment notification lost) records the payment, then the refund; a query that finds a paid
order closed records the full refund; a query that finds a waiting order closed after a payment
(`send_pay_date`) records the payment and the full refund.
"""
from chalicelib import metrics, orders, store
from chalicelib.alipay.money import format_amount, parse_beijing_time
from chalicelib.errors import Unavailable
from chalicelib.service import log_event, refunds
from chalicelib.service.views import order_state
from chalicelib.store import ConditionFailed, notify_tag, valid_out_trade_no

APPLIED, UNCHANGED, REFUSED, SCHEME_MISMATCH = "applied", "unchanged", "refused", "scheme_mismatch"
_ATTEMPTS = 5


def apply(ctx, note, source, state=None, guessed=False, legacy=False):
    """(APPLIED, change) | (UNCHANGED, reason) | (REFUSED, (reason, state)) | (SCHEME_MISMATCH, None).

    `state` is the order as the caller knows it; a guessed one (no read, orders.likely_state) is
    trusted only to make a status change, whose write is conditioned on it.
    """
    for _ in range(_ATTEMPTS):
        if state is None or guessed and (note.is_refund or _implies_refund(note, state)):
            state, guessed = read_state(ctx, note.out_trade_no), False
        if state is not None and (state.product == "legacy") != legacy:
            return SCHEME_MISMATCH, None
        if note.is_refund or _implies_refund(note, state):
            try:
                return _apply_refund(ctx, note, state, source)
            except ConditionFailed:  # the implied payment lost a race: decide again
                state, guessed = read_state(ctx, note.out_trade_no), False
                continue
        decision = orders.decide(state, orders.Report(note.trade_status, note.total_amount))
        if guessed and not isinstance(decision, orders.Change):
            state, guessed = read_state(ctx, note.out_trade_no), False
            continue
        if isinstance(decision, orders.Refused):
            return REFUSED, (decision.reason, state)
        if isinstance(decision, orders.Unchanged):
            return UNCHANGED, decision.reason
        try:
            transition(ctx, note.out_trade_no, state, decision, source, note=note)
            return APPLIED, f"{decision.from_status}->{decision.to_status}"
        except ConditionFailed:
            state, guessed = read_state(ctx, note.out_trade_no), False
    raise Unavailable("the order kept changing under this report")


def _implies_refund(note, state):
    """A query (no notify_id) that finds the trade closed although it was paid: a full refund."""
    if note.notify_id is not None or note.trade_status != orders.TRADE_CLOSED or state is None:
        return False
    return state.status == orders.TRADE_SUCCESS or (orders.is_unpaid(state) and bool(note.gmt_payment))


def _apply_refund(ctx, note, state, source):
    """A refund report: the payment first if we missed it, then the refund's record."""
    if state is None:
        return REFUSED, ("unknown_order", None)
    if note.total_amount is None or note.total_amount != state.total_amount:
        return REFUSED, ("amount_mismatch", state)
    fee = note.refund_fee if note.notify_id is not None else state.total_amount  # a query: all of it
    if fee is None or fee <= 0:
        return REFUSED, ("refund_without_refund_fee", state)
    if fee > state.total_amount:
        return REFUSED, ("refund_exceeds_total", state)
    steps = []
    if orders.is_unpaid(state):
        paid = orders.decide(state, orders.Report(orders.TRADE_SUCCESS, note.total_amount))
        if isinstance(paid, orders.Change):
            transition(ctx, note.out_trade_no, state, paid, source, note=note, implied=True)
            steps.append(f"{paid.from_status}->{paid.to_status}")
    closed = note.trade_status == orders.TRADE_CLOSED
    # A query (or a cancel) that finds the trade closed after payment: all of it went back.
    amount = fee if note.notify_id is None and note.out_biz_no else None
    if refunds.record_report(ctx, note.out_trade_no, note.out_biz_no, fee, source, note.notify_id, closed=closed,
                             amount=amount):
        steps.append("refund")
    return (APPLIED, " ".join(steps)) if steps else (UNCHANGED, "duplicate")


def close_locally(ctx, order, source, actor=None, reason=None):
    """WAIT_BUYER_PAY -> TRADE_CLOSED, closed by us: by close, cancel, a barcode decline, or at
    expiry. A payment Alipay reports later is the anomaly paid_after_local_close (contract)."""
    state = order_state(order)
    report = orders.Report(orders.TRADE_CLOSED, order["total_amount"])
    for _ in range(_ATTEMPTS):
        decision = orders.decide(state, report)
        if not isinstance(decision, orders.Change):
            return
        try:
            transition(ctx, order["out_trade_no"], state, decision, source, actor=actor,
                       extra={"closed_locally": True}, reason=reason)
            return
        except ConditionFailed:
            state = read_state(ctx, order["out_trade_no"])


def transition(ctx, out_trade_no, state, change, source, note=None, actor=None, extra=None, implied=False,
               reason=None):
    """One transition, written with its event(s) in one conditional transaction."""
    now = ctx.now_iso()
    updates = {"status": change.to_status, "updated_at": now, **(extra or {})}
    if change.from_status == orders.WAIT_BUYER_PAY:
        updates.update(store.schedule(out_trade_no, None))  # leaves the reconciler's index
    if change.from_status == orders.TRADE_CLOSED:
        updates["closed_locally"] = False  # the exception applies once
    for name in ("trade_no", "buyer_id"):
        if note is not None and getattr(note, name):
            updates[name] = getattr(note, name)
    paid_at = parse_beijing_time(note.gmt_payment) if note is not None else None
    if paid_at and change.to_status in orders.PAID:
        updates["paid_at"] = paid_at.isoformat()
    notify_id = note.notify_id if note is not None else None
    base = {"at": now, "source": source, "notify_id": notify_id, "actor": actor}
    if implied:
        base["implied"] = True  # nobody reported this step: a later report proved it happened
    if reason:
        base["reason"] = reason  # why we closed it (a barcode decline names Alipay's sub_code)
    tag = f"{notify_tag(notify_id)}#{change.to_status}" if notify_id else f"v{state.version + 1}"
    events = [(f"{source}#{tag}", dict(base, type="transition", **{"from": change.from_status,
                                                                      "to": change.to_status}))]
    if change.to_status in orders.PAID:
        metrics.count("Payments")
    for reason in change.anomalies:
        metrics.count("Anomalies", Reason=reason)
        events.append((f"anomaly#{tag}#{reason}", dict(base, type="anomaly", reason=reason)))
        log_event(event="anomaly", reason=reason, out_trade_no=out_trade_no, notify_id=notify_id)
    ctx.store.apply_change(out_trade_no, state, updates, events, snapshot={
        "status": change.to_status, "refunded_amount": format_amount(state.refunded_amount)})


def record_anomaly(ctx, out_trade_no, reason, source, state, notify_id=None):
    """A report that was refused: one event, which a redelivery of the same report does not repeat."""
    tag = notify_tag(notify_id) if notify_id else f"{source}#v{state.version}"
    metrics.count("Anomalies", Reason=reason)
    ctx.store.add_event(out_trade_no, f"anomaly#{tag}#{reason}", {
        "at": ctx.now_iso(), "source": source, "type": "anomaly", "reason": reason, "notify_id": notify_id},
        seq=state.version, snapshot={"status": state.status, "refunded_amount": format_amount(state.refunded_amount)})


def read_state(ctx, out_trade_no):
    order = ctx.store.get_order(out_trade_no) if valid_out_trade_no(out_trade_no) else None
    return order_state(order) if order else None
