"""Order events to EventBridge, from the table's stream (contract, "Order events").

The table is the outbox: every change of an order is written in one transaction with its event
item, so the stream carries each change as it was committed, in order per order (a shard follows
the partition key). The notify path never waits for any of this. Here stream records become
EventBridge entries (chalicelib.store says which records are published), sent with PutEvents:

- at most ten entries per call, and never two of one order in the same call: an order's next
  entry is sent only once the call carrying its previous one succeeded, so its events reach the
  bus in order;
- every answer entry is checked (FailedEntryCount and each ErrorCode): a record that was not
  published is reported by its sequence number (Lambda's `batchItemFailures`), and so is every
  later record of the same order, which is not attempted. Lambda then delivers the batch again
  from the first reported record; what was published already is published again with the same
  Detail and `id`, which consumers dedupe on.
"""
import hashlib
import json
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import metrics, orders
from chalicelib.alipay.money import format_amount
from chalicelib.service import log_event
from chalicelib.service.views import created_entry, listed
from chalicelib.store import UnreadableRecord, products_and_totals_in, stream_change

SOURCE = "chalice-alipay"
DETAIL_VERSION = 1
MAX_ENTRIES = 10  # PutEvents takes ten entries per call at most
_REFUND_TYPES = {"REFUND_SUCCESS": "order.refund.succeeded", "REFUND_FAILED": "order.refund.failed",
                 "REFUND_PENDING": "order.refund.pending"}
_PAYABLE = (orders.WAIT_BUYER_PAY, orders.TRADE_CLOSED)  # a closed order paid later: contract, State machine


class Unpublishable(Exception):
    """An entry no DetailType names: a defect of ours, reported so that it is retried, then dead-lettered."""


@dataclass
class Outcome:
    records: int = 0
    events: int = 0
    failed: list = field(default_factory=list)  # sequence numbers, in stream order

    def response(self):
        """What Lambda reads with ReportBatchItemFailures: it resumes from the first one."""
        return {"batchItemFailures": [{"itemIdentifier": number} for number in self.failed]}


def detail_type(entry):
    kind = entry.get("type")
    if kind == "created":
        return "order.created"
    if kind == "anomaly":
        return "order.anomaly"
    if kind == "refund" and entry.get("status") in _REFUND_TYPES:
        return _REFUND_TYPES[entry["status"]]
    if kind == "transition":
        source, target = entry.get("from"), entry.get("to")
        if target == orders.TRADE_CLOSED:
            return "order.closed"
        if source == orders.TRADE_SUCCESS and target == orders.TRADE_FINISHED:
            return "order.finished"
        if source in _PAYABLE and target in orders.PAID:
            return "order.paid"
    raise Unpublishable(f"no DetailType for a {kind} entry ({entry.get('from')} -> {entry.get('to')})")


def event_id(identity):
    """Stable across redeliveries: the same stored item (and refund status and amount) gives the same id."""
    return hashlib.sha256(identity.encode("utf-8")).hexdigest()[:32]


def detail(change, product, total_amount):
    """The contract's Detail: the entry as GET /orders/{out_trade_no}/events lists it, with the
    order's status and refunded_amount as that entry left it."""
    if change.order is not None:
        order = change.order
        entry, status, refunded = created_entry(order), order["status"], order.get("refunded_amount", 0)
    else:
        entry = change.entry
        status, refunded = entry["snapshot"]["status"], entry["snapshot"]["refunded_amount"]
    shown = listed(entry)
    return {"version": DETAIL_VERSION, "id": event_id(change.identity), "out_trade_no": change.out_trade_no,
            "status": status, "product": product, "total_amount": format_amount(total_amount),
            "refunded_amount": format_amount(refunded), "at": shown.get("settled_at") or shown["at"],
            "source": shown["source"], "event": shown}


def publish(ctx, records):
    """Publish what `records` (stream records, oldest first) carry; an Outcome says what was not."""
    failures = _Failures()
    changes = _changes(records, failures)
    published = _send(ctx.backend.client("events"), _entries(ctx, records, changes, failures), failures)
    outcome = Outcome(records=len(records), events=published, failed=[
        r["dynamodb"]["SequenceNumber"] for r in records if r["dynamodb"]["SequenceNumber"] in failures.numbers])
    metrics.count("EventsPublished", outcome.events)
    metrics.count("EventsFailed", len(outcome.failed))
    log_event(event="publish", records=outcome.records, events=outcome.events, failed=len(outcome.failed))
    return outcome


class _Failures:
    """Records not published, and the orders whose later records must wait for the retry."""

    def __init__(self):
        self.numbers, self.blocked = set(), set()

    def add(self, number, out_trade_no, reason):
        self.numbers.add(number)
        if out_trade_no not in self.blocked:
            self.blocked.add(out_trade_no)
            log_event(event="publish", outcome="failed", out_trade_no=out_trade_no, reason=reason)


def _changes(records, failures):
    changes = []
    for record in records:
        try:
            change = stream_change(record)
        except UnreadableRecord as error:
            failures.add(record["dynamodb"]["SequenceNumber"], error.out_trade_no, str(error))
            continue
        if change is not None:
            changes.append((record["dynamodb"]["SequenceNumber"], change))
    return changes


def _entries(ctx, records, changes, failures):
    """(sequence number, out_trade_no, PutEvents entry) of each change, in stream order. Each
    order's product and total come from the batch when an image of its item is there, else from
    one read for all the orders without."""
    facts = products_and_totals_in(records)
    missing = {c.out_trade_no for _, c in changes} - set(facts)
    facts.update(ctx.store.products_and_totals(missing) if missing else {})
    entries = []
    for number, change in changes:
        try:
            if change.out_trade_no not in facts:
                raise Unpublishable("no such order")
            body = detail(change, *facts[change.out_trade_no])
            entry = {"Source": SOURCE, "DetailType": detail_type(body["event"]), "EventBusName": ctx.settings.event_bus_name,
                     "Detail": json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str)}
        except (Unpublishable, KeyError) as error:
            failures.add(number, change.out_trade_no, f"{type(error).__name__}: {error}")
            continue
        entries.append((number, change.out_trade_no, entry))
    return entries


def _send(events, queue, failures):
    """PutEvents, ten entries at most and one per order per call; returns how many were published."""
    published = 0
    while queue:
        batch, later, in_batch = [], [], set()
        for item in queue:
            number, out_trade_no, _ = item
            if out_trade_no in failures.blocked:
                failures.add(number, out_trade_no, "an earlier event of the order was not published")
            elif len(batch) < MAX_ENTRIES and out_trade_no not in in_batch:
                batch.append(item)
                in_batch.add(out_trade_no)
            else:
                later.append(item)
        queue = later
        if not batch:
            continue
        try:
            answer = events.put_events(Entries=[entry for _, _, entry in batch])
        except (ClientError, BotoCoreError) as error:  # EventBridge unreachable: the rest waits for the retry
            for number, out_trade_no, _ in batch + queue:
                failures.add(number, out_trade_no, f"PutEvents: {type(error).__name__}")
            return published
        results = answer.get("Entries") or []
        # An answer whose count and entries disagree is not trusted for any entry.
        trusted = (len(results) == len(batch)
                   and answer.get("FailedEntryCount", 0) == sum(1 for r in results if r.get("ErrorCode")))
        for index, (number, out_trade_no, _) in enumerate(batch):
            result = results[index] if trusted else {}
            if result.get("EventId") and not result.get("ErrorCode"):
                published += 1
            else:
                failures.add(number, out_trade_no, f"PutEvents: {result.get('ErrorCode') or 'no answer for the entry'}")
    return published


def ensure_bus(client, name):
    """The bus exists (locally: `manage.py create-table`, `make run`; in AWS the template makes it)."""
    try:
        client.describe_event_bus(Name=name)
        return []
    except client.exceptions.ResourceNotFoundException:
        client.create_event_bus(Name=name)
        return [f"created event bus {name}"]
