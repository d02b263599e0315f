"""The reconciler (contract, manage.py reconcile), in two parts that scale apart:

- `run_pass` (scheduled): asks each shard of the `due` index for what is due now, leases each due
  order and sends it to the reconcile queue, ten per message batch. It reads nothing per item and
  touches nothing that is not due, so its cost follows the work due, not the backlog.
- `work` (the queue's worker, one order per message): queries a waiting order on its backoff and
  applies what Alipay says, closes it at expiry, settles or resends unsettled refunds, learns
  console refunds' amounts, then moves the order's due time to the next step or off the index.
  Every action is conditioned, so a redelivered message changes nothing twice.

`poll` is the fast lane: a short chain of delayed messages that queries one order every few
seconds for a little while (for payments whose outcome is known to be imminent).
"""
from chalicelib import metrics, orders
from chalicelib.alipay.errors import GatewayError, InvalidSignature
from chalicelib.errors import GatewayFailure, OrderNotClosable, ServiceError
from chalicelib.refunds import REFUND_PENDING
from chalicelib.service import lifecycle, log_event, parse_iso, refunds
from chalicelib.service.create import expires_at
from chalicelib.store import SHARDS

LEASE_SECONDS = 15 * 60      # a leased order is not sent again for this long (worker and retries)
PASS_MARGIN_SECONDS = 2      # a pass stops with this much of its invocation left
WORK_MARGIN_SECONDS = 2      # a worker starts no order with less (gateway calls are capped by the time left)
EVERYTHING = 2 ** 40         # with --min-age: every order on the index, due or not
POLL_INTERVAL_SECONDS = 5


def run_pass(ctx, min_age=None):
    """Find what is due and queue it. `min_age` (manage.py reconcile --min-age) takes every order
    on the index instead, and asks the worker to query waiting orders at least that old."""
    now = ctx.now_epoch()
    horizon = now if min_age is None else EVERYTHING
    summary = {"shards": 0, "due": 0, "queued": 0, "complete": True}
    batch = []
    for shard in (f"{n:02d}" for n in range(SHARDS)):
        start = None
        while True:
            if ctx.time_left() < PASS_MARGIN_SECONDS:  # stop cleanly: what is left stays due
                summary["complete"] = False
                break
            found, start = ctx.store.due_orders(shard, horizon, start)
            summary["due"] += len(found)
            for out_trade_no, due_at in found:
                if ctx.store.lease(out_trade_no, due_at, now + LEASE_SECONDS):
                    batch.append({"out_trade_no": out_trade_no, "min_age": min_age})
            if len(batch) >= 10:
                _flush(ctx, batch, summary)
            if not start:
                break
        if not summary["complete"]:
            break
        summary["shards"] += 1
    _flush(ctx, batch, summary)
    metrics.count("ReconcileDue", summary["due"])
    metrics.count("ReconcileQueued", summary["queued"])
    log_event(event="reconcile_pass", **summary)
    return summary


def _flush(ctx, batch, summary):
    if batch:
        ctx.backend.send(ctx.settings.reconcile_queue, batch)
        summary["queued"] += len(batch)
        batch.clear()


def work(ctx, messages):
    """The reconcile queue's worker: each message's order on its own, an error on one never the
    end of the others. Returns (summary, ids of messages to be delivered again)."""
    summary = {"orders": 0, "queried": 0, "paid": 0, "closed": 0, "refunds_settled": 0, "refunds_resent": 0,
               "refunds_deferred": 0, "refunds_unsettled": 0, "errors": 0}
    retry = []
    for message_id, body in messages:
        if ctx.time_left() < WORK_MARGIN_SECONDS:  # no time to finish this one: SQS delivers it again
            retry.append(message_id)
            continue
        try:
            if body.get("out_request_no"):  # a refund call deferred for the spacing between calls
                outcome = _send_refund(ctx, body["out_trade_no"], body["out_request_no"])
                summary[outcome] += 1
            else:
                _reconcile_order(ctx, body["out_trade_no"], body.get("min_age"), summary)
            summary["orders"] += 1
        except Exception as error:  # noqa: BLE001 - isolation: logged, counted, delivered again
            summary["errors"] += 1
            retry.append(message_id)
            log_event(event="reconcile", outcome="error", out_trade_no=body.get("out_trade_no"),
                      error=type(error).__name__, reason=getattr(error, "message", str(error))[:300])
    for name, key in (("ReconcileProcessed", "orders"), ("ReconcilePaid", "paid"), ("ReconcileClosed", "closed"),
                      ("ReconcileErrors", "errors")):
        metrics.count(name, summary[key])
    log_event(event="reconcile_work", **summary)
    return summary, retry


def _reconcile_order(ctx, out_trade_no, min_age, summary):
    order, events = ctx.store.get_order_and_events(out_trade_no)
    if order is None:
        return
    now = ctx.clock()
    if order["status"] == orders.WAIT_BUYER_PAY and order["product"] != "legacy":
        _waiting(ctx, order, now, min_age, summary)
    client = None
    for record in events:
        if record.get("type") != "refund" or not _refund_due(record, now.timestamp(), min_age):
            continue
        if record["status"] == REFUND_PENDING and now.timestamp() - parse_iso(record["at"]).timestamp() > 3600:
            metrics.count("RefundsPendingOverAnHour")  # the money's fate unknown for an hour: an alarm
        client = client or ctx.gateway()
        try:
            summary[_settle_refund(ctx, client, out_trade_no, record)] += 1
        except (GatewayError, InvalidSignature, ServiceError) as error:
            summary["errors"] += 1
            log_event(event="reconcile", out_trade_no=out_trade_no, outcome="error",
                      out_request_no=record["out_request_no"], reason=str(error)[:300])
    _reschedule(ctx, out_trade_no)


def _waiting(ctx, order, now, min_age, summary):
    out_trade_no = order["out_trade_no"]
    created = parse_iso(order["created_at"]).timestamp()
    expired = now >= expires_at(order)
    if min_age is not None and now.timestamp() - created < min_age and not expired:
        return
    try:
        view = lifecycle.sync(ctx, out_trade_no, "reconcile", order=order)
        summary["queried"] += 1
        if view["status"] in orders.PAID:
            summary["paid"] += 1
        elif expired and view["status"] == orders.WAIT_BUYER_PAY:
            lifecycle.close(ctx, None, out_trade_no, "reconcile")
            summary["closed"] += 1
    except (GatewayFailure, OrderNotClosable) as error:
        summary["errors"] += 1
        log_event(event="reconcile", out_trade_no=out_trade_no, outcome="error", reason=error.message)


def _refund_due(record, now, min_age):
    """Pending refunds, and console refunds whose amount we do not know yet, once old enough."""
    if record["status"] != REFUND_PENDING and record.get("refund_amount") is not None:
        return False
    age = now - parse_iso(record["at"]).timestamp()
    return age >= (orders.REFUND_BACKOFF[0] if min_age is None else min_age)


def _settle_refund(ctx, client, out_trade_no, record):
    """Ask the refund query; a pending refund Alipay does not know is sent again, the stored request
    repeated byte for byte (same out_request_no, amount and reason): idempotent at Alipay."""
    no = record["out_request_no"]
    found = refunds.query(ctx, client, out_trade_no, no, "reconcile")
    if found == "settled":
        return "refunds_settled"
    if found == "unknown_at_alipay" and record["status"] == REFUND_PENDING:
        return _outcome(refunds.send(ctx, client, out_trade_no, no, record.get("request"), "reconcile"))
    return "refunds_unsettled"


def _send_refund(ctx, out_trade_no, out_request_no):
    order, events = ctx.store.get_order_and_events(out_trade_no)
    record = next((e for e in events if e.get("type") == "refund" and e.get("out_request_no") == out_request_no), None)
    if order is None or record is None or record["status"] != REFUND_PENDING:
        return "refunds_unsettled"  # settled meanwhile (a notification, an earlier delivery): nothing to send
    return _outcome(refunds.send(ctx, ctx.gateway(), out_trade_no, out_request_no, record.get("request"), "reconcile"))


def _outcome(sent):
    if sent == refunds.DEFERRED:
        return "refunds_deferred"
    return "refunds_settled" if sent in ("succeeded", "failed") else "refunds_resent"


def _reschedule(ctx, out_trade_no):
    """The order's next due time, from what it is now: the next query step of a waiting order (never
    after its expiry), the next look at an unsettled refund; off the index when nothing is left.
    Conditioned on the version read: a writer in between gets its own say, then we look again."""
    for _ in range(3):
        order, events = ctx.store.get_order_and_events(out_trade_no)
        if order is None or ctx.store.reschedule(out_trade_no, int(order.get("version", 0)),
                                                 next_due(order, events, ctx.now_epoch())):
            return


def next_due(order, events, now):
    moments = []
    if order["status"] == orders.WAIT_BUYER_PAY and order["product"] != "legacy":
        created = parse_iso(order["created_at"]).timestamp()
        moments.append(orders.next_check(created, now, orders.QUERY_BACKOFF, max(expires_at(order).timestamp(), now)))
    for record in events:
        if record.get("type") == "refund" and (record["status"] == REFUND_PENDING or record.get("refund_amount") is None):
            moments.append(orders.next_check(parse_iso(record["at"]).timestamp(), now, orders.REFUND_BACKOFF))
    return min(moments) if moments else None


def poll(ctx, out_trade_no, until, cancel=False):
    """The fast lane: query the order now; while it is still waiting and `until` (epoch seconds) has
    not passed, query again in POLL_INTERVAL_SECONDS (a chained, delayed message). With `cancel`
    (a barcode payment), an order still unpaid when the time is up is cancelled at Alipay; one
    whose payment we learned of meanwhile is never cancelled."""
    order, _ = ctx.openapi_order(out_trade_no)
    if order["status"] == orders.WAIT_BUYER_PAY:
        try:
            order = lifecycle.sync(ctx, out_trade_no, "query", order=order)
        except GatewayFailure as error:
            log_event(event="poll", out_trade_no=out_trade_no, outcome="error", reason=error.message)
    if order["status"] != orders.WAIT_BUYER_PAY:
        return order["status"]
    if ctx.now_epoch() + POLL_INTERVAL_SECONDS < until:
        ctx.backend.send(ctx.settings.poll_queue, [{"out_trade_no": out_trade_no, "until": until, "cancel": cancel}],
                         delay_seconds=POLL_INTERVAL_SECONDS)
        return "again"
    if cancel:
        return lifecycle.cancel(ctx, None, out_trade_no, "reconcile")[1]["status"]
    return order["status"]
