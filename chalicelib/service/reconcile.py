"""The scheduled pass (contract, manage.py reconcile): waiting orders queried on their backoff,
paid ones applied, expired ones closed at Alipay and here, unsettled refunds settled (a pending
refund Alipay does not know is sent again, byte for byte) and console refunds' amounts learned.
Found through the sparse `waiting` index, never a scan; legacy orders are not in it."""
from chalicelib import orders
from chalicelib.alipay.errors import GatewayError, InvalidSignature
from chalicelib.errors import GatewayFailure, OrderNotClosable, ServiceError
from chalicelib.refunds import REFUND_PENDING
from chalicelib.service import lifecycle, log_event, parse_iso, refunds
from chalicelib.service.create import expires_at

# After creation, a waiting order is queried on this backoff (seconds).
RECONCILE_BACKOFF = (120, 300, 900, 3600, 6 * 3600, 24 * 3600)
REFUND_RECHECK_SECONDS = 60  # a pending refund younger than this may still be in flight


def run(ctx, min_age=None):
    summary = {"checked": 0, "queried": 0, "paid": 0, "closed": 0, "refunds_settled": 0, "refunds_resent": 0,
               "refunds_unsettled": 0, "errors": 0}
    now = ctx.clock()
    for out_trade_no in ctx.store.waiting_orders("WAIT"):
        order = ctx.store.get_order(out_trade_no)
        if order is None or order["status"] != orders.WAIT_BUYER_PAY or order["product"] == "legacy":
            continue
        summary["checked"] += 1
        age = (now - parse_iso(order["created_at"])).total_seconds()
        expired = now >= expires_at(order)
        step = int(order.get("reconcile_step", 0))
        due = age >= min_age if min_age is not None else (
            step < len(RECONCILE_BACKOFF) and age >= RECONCILE_BACKOFF[step])
        if not (due or expired):
            continue
        try:
            view = lifecycle.sync(ctx, out_trade_no, "reconcile", order=order)
            summary["queried"] += 1
            if view["status"] in orders.PAID:
                summary["paid"] += 1
            elif expired and view["status"] == orders.WAIT_BUYER_PAY:
                lifecycle.close(ctx, None, out_trade_no, "reconcile")
                summary["closed"] += 1
            elif min_age is None and view["status"] == orders.WAIT_BUYER_PAY:
                passed = sum(1 for threshold in RECONCILE_BACKOFF if age >= threshold)
                ctx.store.set_fields(out_trade_no, {"reconcile_step": passed})
        except (GatewayFailure, OrderNotClosable) as error:
            summary["errors"] += 1
            log_event(event="reconcile", out_trade_no=out_trade_no, outcome="error", reason=error.message)
    client = None
    for out_trade_no in ctx.store.waiting_orders("REFUND"):
        order, events = ctx.store.get_order_and_events(out_trade_no)
        if order is None:
            continue
        for record in events:
            if record.get("type") != "refund" or not _due(record, now, min_age):
                continue
            client = client or ctx.gateway()
            try:
                summary[_settle(ctx, client, out_trade_no, record)] += 1
            except (GatewayError, InvalidSignature, ServiceError) as error:
                summary["errors"] += 1
                log_event(event="reconcile", out_trade_no=out_trade_no, outcome="error",
                          out_request_no=record["out_request_no"], reason=str(error))
    log_event(event="reconcile", **summary)
    return summary


def _due(record, now, min_age):
    """Pending refunds, and console refunds whose amount we do not know yet."""
    if record["status"] != REFUND_PENDING and record.get("refund_amount") is not None:
        return False
    age = (now - parse_iso(record["at"])).total_seconds()
    return age >= (REFUND_RECHECK_SECONDS if min_age is None else min_age)


def _settle(ctx, client, out_trade_no, record):
    """Ask the refund query; a pending refund Alipay does not know is sent again, the stored request
    repeated byte for byte (same out_request_no, amount and reason): idempotent at Alipay."""
    no = record["out_request_no"]
    found = refunds.query(ctx, client, out_trade_no, no, "reconcile")
    if found == "settled":
        return "refunds_settled"
    if found == "unknown_at_alipay" and record["status"] == REFUND_PENDING:
        outcome = refunds.send(ctx, client, out_trade_no, no, record.get("request"), "reconcile")
        return "refunds_settled" if outcome in ("succeeded", "failed") else "refunds_resent"
    return "refunds_unsettled"
