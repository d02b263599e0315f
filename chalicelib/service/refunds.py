"""Refunds: our requests, Alipay's answers and reports, settled only by definite answers.

Every change goes through `_settle`: read the order and its refund records, compute the next
`refunds.Ledger`, write the records that changed and the order's amounts in one transaction
conditioned on the order's version. The amounts come from the ledger, never from adding up
reports (contract "Refund outcomes").
"""
import math
import uuid
from decimal import Decimal

from chalicelib import metrics, orders, refunds, store
from chalicelib.alipay.client import REFUND_SPACING_SECONDS, refund_biz
from chalicelib.alipay.errors import GatewayError, InvalidAmount, InvalidSignature
from chalicelib.alipay.money import format_amount, parse_amount, parse_reported_amount
from chalicelib.errors import IdempotencyConflict, InvalidRequest, RefundNotAllowed, Unavailable
from chalicelib.refunds import REFUND_FAILED, REFUND_PENDING, REFUND_SUCCESS
from chalicelib.service import log_event
from chalicelib.service.inputs import checked_text, no_nulls
from chalicelib.service.views import order_state, order_view, refund_view
from chalicelib.store import ConditionFailed, valid_out_trade_no

_ATTEMPTS = 5
DEFERRED = "deferred"


def refund(ctx, actor, out_trade_no, body):
    """(http status, refund view). The refund is recorded pending, reserving its amount under the
    order's version condition, before Alipay is called; only a definite answer ends it."""
    amount, out_request_no, reason = validate_refund(body)
    replay = False
    for _ in range(_ATTEMPTS):
        order, events = ctx.openapi_order(out_trade_no)
        ledger = ledger_of(order, events)
        record = ledger.get(out_request_no)
        if record is not None:
            if record.amount != amount:
                raise IdempotencyConflict(f"refund {out_request_no} exists with another amount", "out_request_no")
            replay = True
            if record.status == REFUND_FAILED:
                raise RefundNotAllowed(f"Alipay refused refund {out_request_no}: {record.sub_code}",
                                       sub_code=record.sub_code)
            break
        if order["status"] != orders.TRADE_SUCCESS:
            raise RefundNotAllowed(f"order {out_trade_no} is {order['status']}; only paid orders are refunded")
        try:
            reserved = ledger.reserve(out_request_no, amount)
        except refunds.RefundRefused as error:
            raise RefundNotAllowed(str(error)) from None
        request = refund_biz(out_trade_no, format_amount(amount), out_request_no, reason)
        try:
            _write(ctx, order, events, ledger, reserved, "api", actor=actor, requests={out_request_no: request})
            break
        except ConditionFailed:
            continue
    else:
        raise Unavailable("the order kept changing under this refund")
    stored = _stored_record(events, out_request_no) if replay else None
    if not replay or stored["status"] == REFUND_PENDING:
        send(ctx, ctx.gateway(), out_trade_no, out_request_no,
             stored.get("request") if stored else request, source="api")
    order, events = ctx.order_and_events(out_trade_no)
    stored = _stored_record(events, out_request_no)
    if stored["status"] == REFUND_FAILED:
        raise RefundNotAllowed(f"Alipay refused refund {out_request_no}: {stored.get('sub_code')}",
                               sub_code=stored.get("sub_code"))
    # A notification may have settled it while we waited for the answer: the record decides.
    status = 202 if stored["status"] == REFUND_PENDING else 200 if replay else 201
    return status, refund_view(stored, order_view(order, events))


def send(ctx, client, out_trade_no, out_request_no, request, source):
    """Send a pending refund's stored request (again) and settle what the answer makes definite.
    The call first claims the trade's next refund slot; when another call was too recent, the
    refund goes to the worker's queue with a delay (DEFERRED) and stays pending."""
    if not ctx.store.claim_refund_call(out_trade_no, ctx.now_epoch(), REFUND_SPACING_SECONDS):
        defer(ctx, out_trade_no, out_request_no)
        return DEFERRED
    if request is None:  # recorded before requests were stored: the same fields, rebuilt
        _, events = ctx.order_and_events(out_trade_no)
        record = _stored_record(events, out_request_no)
        request = refund_biz(out_trade_no, record["refund_amount"], out_request_no)
    try:
        answer = client.refund(out_trade_no, request)
        outcome = refunds.classify_refund_answer(answer.code, answer.sub_code, answer.fields.get("fund_change"))
    except (GatewayError, InvalidSignature) as error:
        answer, outcome = None, refunds.UNKNOWN
        log_event(event="refund", outcome="unknown", out_trade_no=out_trade_no, out_request_no=out_request_no,
                  reason=str(error))
    if outcome == refunds.SUCCEEDED:
        fee = _amount_or_none(answer.fields.get("refund_fee"))
        _settle(ctx, out_trade_no, source,
                lambda ledger: _reported(ledger.succeed(out_request_no), fee))
    elif outcome == refunds.FAILED:
        _settle(ctx, out_trade_no, source, lambda ledger: ledger.fail(out_request_no, answer.sub_code))
    elif outcome == refunds.ASK_QUERY:  # fund_change N or absent: the refund query decides (§3.6)
        query(ctx, client, out_trade_no, out_request_no, source)
    elif answer is not None:
        log_event(event="refund", outcome="unknown", out_trade_no=out_trade_no, out_request_no=out_request_no,
                  code=answer.code, sub_code=answer.sub_code)
    return outcome


def defer(ctx, out_trade_no, out_request_no):
    """The refund call waits for its slot in the reconcile worker's queue. Should SQS be down, the
    refund is pending and on the due index all the same: a later pass finds it."""
    try:
        ctx.backend.send(ctx.settings.reconcile_queue, [{"out_trade_no": out_trade_no, "out_request_no": out_request_no}],
                         delay_seconds=math.ceil(REFUND_SPACING_SECONDS))
        log_event(event="refund", outcome="deferred", out_trade_no=out_trade_no, out_request_no=out_request_no)
        metrics.count("Refunds", Outcome="deferred")
    except Unavailable as error:
        log_event(event="refund", outcome="defer_failed", out_trade_no=out_trade_no, out_request_no=out_request_no,
                  reason=error.message)


def query(ctx, client, out_trade_no, out_request_no, source):
    """alipay.trade.fastpay.refund.query: "settled" (success recorded, its amount learned),
    "unknown_at_alipay" (10000 without refund_status: Alipay has no such refund) or "unknown"."""
    answer = client.refund_query(out_trade_no, out_request_no)
    if answer.code != "10000":
        return "unknown"
    if answer.fields.get("refund_status") == REFUND_SUCCESS:
        amount = _amount_or_none(answer.fields.get("refund_amount"))
        _settle(ctx, out_trade_no, source, lambda ledger: ledger.succeed(out_request_no, amount))
        return "settled"
    return "unknown_at_alipay" if not answer.fields.get("refund_status") else "unknown"


def record_report(ctx, out_trade_no, out_biz_no, refund_fee, source, notify_id=None, closed=False, amount=None):
    """A refund Alipay reported (a notification, a query that finds a paid trade closed, a cancel
    that refunded): the refund it names succeeded (with its `amount` when known), and the
    cumulative refund_fee is at least this. Returns True when it changed something."""
    return _settle(ctx, out_trade_no, source,
                   lambda ledger: _reported(ledger.succeed(out_biz_no, amount) if out_biz_no else ledger, refund_fee),
                   notify_id=notify_id, close=closed)


def ledger_of(order, events):
    records = tuple(refunds.Refund(e["out_request_no"], _amount_or_none(e.get("refund_amount")), e["status"],
                                   ours=e.get("source") != "console", sub_code=e.get("sub_code"))
                    for e in events if e.get("type") == "refund")
    return refunds.Ledger(order["total_amount"], records, Decimal(order.get("reported_refund_fee") or 0))


def _settle(ctx, out_trade_no, source, step, notify_id=None, close=False):
    """Apply `step` (Ledger -> Ledger) to the order's refunds in one conditional write; retried
    when another writer got there first. False when it changed nothing (a redelivery)."""
    for _ in range(_ATTEMPTS):
        order, events = ctx.order_and_events(out_trade_no)
        ledger = ledger_of(order, events)
        after = step(ledger)
        closes = (close or after.fully_refunded) and order["status"] == orders.TRADE_SUCCESS
        if after == ledger and not closes:
            return False
        try:
            _write(ctx, order, events, ledger, after, source, notify_id=notify_id, close=closes)
            return True
        except ConditionFailed:
            continue
    raise Unavailable("the order kept changing under this refund")


def _write(ctx, order, events, before, after, source, actor=None, notify_id=None, close=False, requests=None):
    """The records that changed, the order's amounts and (on a full refund) the close, as one
    transaction conditioned on the version the ledger was read at."""
    now = ctx.now_iso()
    stored = {e["out_request_no"]: e for e in events if e.get("type") == "refund"}
    records = []
    for refund in after.refunds:
        if before.get(refund.out_request_no) == refund:
            continue
        record = dict(stored.get(refund.out_request_no) or {
            "at": now, "source": source if refund.ours else "console", "type": "refund",
            "out_request_no": refund.out_request_no, "actor": actor,
            "request": (requests or {}).get(refund.out_request_no)})
        record.update(status=refund.status, sub_code=refund.sub_code, settled_at=None if refund.status == REFUND_PENDING else now,
                      refund_amount=format_amount(refund.amount) if refund.amount is not None else None)
        if notify_id and refund.status == REFUND_SUCCESS and not record.get("notify_id"):
            record["notify_id"] = notify_id
        records.append((f"refund#{refund.out_request_no}", {k: v for k, v in record.items() if v is not None}))
        log_event(event="refund", outcome=refund.status, out_trade_no=order["out_trade_no"],
                  out_request_no=refund.out_request_no, source=source)
        metrics.count("Refunds", Outcome=refund.status)
    status = orders.TRADE_CLOSED if close else order["status"]
    updates = {"refunded_amount": after.refunded, "refunds_pending": after.pending,
               "reported_refund_fee": after.reported_fee, "updated_at": now, "refunds_succeeded": None}
    if order["status"] != orders.WAIT_BUYER_PAY:  # unsettled refunds keep it on the reconciler's index
        updates.update(store.schedule(order["out_trade_no"], ctx.now_epoch() + orders.REFUND_BACKOFF[0]
                                      if after.unsettled else None))
    transitions = []
    if close:
        updates["status"] = orders.TRADE_CLOSED
        transitions.append((f"{source}#refund#{orders.TRADE_CLOSED}", {
            "at": now, "source": source, "type": "transition", "from": orders.TRADE_SUCCESS,
            "to": orders.TRADE_CLOSED, "notify_id": notify_id}))
    ctx.store.apply_change(order["out_trade_no"], order_state(order), updates, transitions, records=records,
                           snapshot={"status": status, "refunded_amount": format_amount(after.refunded)})


def _reported(ledger, refund_fee):
    return ledger.report_fee(refund_fee) if refund_fee is not None else ledger


def _stored_record(events, out_request_no):
    return next(e for e in events if e.get("type") == "refund" and e.get("out_request_no") == out_request_no)


def _amount_or_none(value):
    try:
        return parse_reported_amount(value) if value else None
    except InvalidAmount:
        return None


def validate_refund(body):
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", "body")
    no_nulls(body)
    unknown = set(body) - {"refund_amount", "out_request_no", "reason"}
    if unknown:
        name = sorted(unknown)[0][:64]
        raise InvalidRequest(f"unknown field {name!r}", name or "body")
    try:
        amount = parse_amount(body.get("refund_amount"))
    except InvalidAmount as error:
        raise InvalidRequest(f"refund_amount: {error}", "refund_amount") from None
    out_request_no = body.get("out_request_no")
    if out_request_no is None:
        out_request_no = "R" + uuid.uuid4().hex[:20].upper()
    elif not valid_out_trade_no(out_request_no):  # Alipay's rule is the same as out_trade_no's
        raise InvalidRequest("out_request_no must match [A-Za-z0-9_]{1,64}", "out_request_no")
    return amount, out_request_no, checked_text(body, "reason", 256)
