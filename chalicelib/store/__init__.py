"""The only module that talks to DynamoDB. One table:

| item | pk | sk | notes |
|---|---|---|---|
| order | `ORDER#<out_trade_no>` | `ORDER` | `due_shard` and `due_at` while the order has work for the reconciler (waiting and not legacy, or a refund unsettled), absent otherwise: the sparse index `due` finds what is due now without a scan. `expires_at` is the order's payment deadline (an ISO string), never the TTL attribute |
| event | `ORDER#<out_trade_no>` | `EVENT#<dedupe key>` | append-only, except refund records (`EVENT#refund#<out_request_no>`), whose status moves on; the key makes a redelivery a conditional-check failure, never a second row |
| idempotency | `IDEMPOTENCY#<key>` | `IDEMPOTENCY` | keys belong to the merchant, not to a token; `purge_at` is the table's TTL attribute |

The `due` index (hash `due_shard`, one of SHARDS values from a hash of out_trade_no; range
`due_at`, epoch seconds) spreads waiting orders over SHARDS partitions, so neither the index's
writes nor a pass's reads meet one hot hash value, and a pass asks each shard only for what is
due now (README, "Capacity"). SHARDS is fixed per table: changing it is a migration.

Correctness rests on conditions, not on reads: every write is conditional, and a change to an
order is one transaction whose conditions are the state it was decided from. If another writer
got there first the condition fails, the caller re-reads and decides again. A transaction that
DynamoDB cancels for another reason is never read as a lost race (see `_call`).
"""
import hashlib
import random
import re
import time
from decimal import Decimal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import InternalError, Unavailable

ORDER_SK = "ORDER"
IDEMPOTENCY_SK = "IDEMPOTENCY"
DUE_INDEX = "due"
SHARDS = 16
LEGACY_INDEX = "waiting"  # the layout before `due`: `manage.py migrate-due` moves its items
# When DynamoDB may delete an item (epoch seconds): idempotency records only. Never on an order,
# or DynamoDB would delete the order itself, paid or not.
TTL_ATTRIBUTE = "purge_at"
_OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_]{1,64}")

# How DynamoDB's refusals are read (contract, State machine). A lost condition means "decide
# again"; contention and throttling pass with time; anything else will never succeed.
_RETRYABLE_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded",
                      "RequestLimitExceeded"}
_UNAVAILABLE_CODES = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
                      "InternalServerError", "ServiceUnavailable", "TransactionInProgressException",
                      "ResourceNotFoundException", "AccessDeniedException", "UnrecognizedClientException"}
RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4)  # seconds, each jittered: about 0.75 s at the most


def valid_out_trade_no(out_trade_no):
    """Alipay's own rule for out_trade_no, checked before any key is built from it."""
    return isinstance(out_trade_no, str) and _OUT_TRADE_NO.fullmatch(out_trade_no) is not None


def due_shard(out_trade_no):
    return f"{int(hashlib.sha256(out_trade_no.encode()).hexdigest()[:8], 16) % SHARDS:02d}"


def schedule(out_trade_no, at_epoch):
    """Updates that put an order on the reconciler's index, due at `at_epoch` (None: off it)."""
    if at_epoch is None:
        return {"due_shard": None, "due_at": None}
    return {"due_shard": due_shard(out_trade_no), "due_at": int(at_epoch)}


def notify_tag(notify_id):
    """A fixed-length stand-in for Alipay's notify_id in event keys: whatever its length, a
    verified notification's key fits DynamoDB's 1,024-byte sort key."""
    return hashlib.sha256(notify_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _dump(item):
    return {key: _attribute(value) for key, value in item.items() if value is not None}


def _load(item):
    return {key: _value(value) for key, value in item.items()}


def _attribute(value):
    """A value as a DynamoDB attribute, for the types we store; boto3's TypeSerializer (five times
    slower, on every write) for anything else, and for its errors (a float is refused)."""
    kind = type(value)
    if kind is str:
        return {"S": value}
    if kind is bool:
        return {"BOOL": value}
    if kind is int or kind is Decimal:
        return {"N": str(value)} if kind is int or value.is_finite() else _serializer.serialize(value)
    if kind is dict:
        return {"M": {key: _attribute(item) for key, item in value.items()}}
    if kind is list:
        return {"L": [_attribute(item) for item in value]}
    if value is None:
        return {"NULL": True}
    return _serializer.serialize(value)


def _value(attribute):
    """The inverse of _attribute: numbers come back as Decimal, as boto3's deserializer gives them."""
    (kind, value), = attribute.items()
    if kind == "S":
        return value
    if kind == "N":
        return Decimal(value)
    if kind == "M":
        return {key: _value(item) for key, item in value.items()}
    if kind == "L":
        return [_value(item) for item in value]
    if kind == "BOOL":
        return value
    if kind == "NULL":
        return None
    return _deserializer.deserialize(attribute)


def order_key(out_trade_no):
    return {"pk": {"S": f"ORDER#{out_trade_no}"}, "sk": {"S": ORDER_SK}}


class ConditionFailed(Exception):
    """A conditional write lost: the item exists, or is not in the state the write assumed."""


class OrderStore:
    def __init__(self, client, table, sleep=time.sleep):
        self._client = client
        self.table = table
        self.sleep = sleep

    # ---- reads ---------------------------------------------------------------------------

    def get_order(self, out_trade_no):
        item = self._call("get_item", TableName=self.table, Key=order_key(out_trade_no),
                          ConsistentRead=True).get("Item")
        return _public(_load(item)) if item else None

    def get_order_and_events(self, out_trade_no):
        """One query returns the order and its events (they share the partition)."""
        items, start = [], None
        while True:
            kwargs = {"ExclusiveStartKey": start} if start else {}
            page = self._call("query", TableName=self.table, ConsistentRead=True,
                              KeyConditionExpression="pk = :pk",
                              ExpressionAttributeValues={":pk": {"S": f"ORDER#{out_trade_no}"}}, **kwargs)
            items.extend(_load(item) for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        order = next((_public(item) for item in items if item["sk"] == ORDER_SK), None)
        events = [item["event"] for item in items if item["sk"].startswith("EVENT#")]
        return order, events

    def products_and_totals(self, out_trade_nos, attempts=5):
        """{out_trade_no: (product, total_amount)} of the orders named (the events publisher's read
        for orders whose item is not in its batch; neither value changes after an order is created):
        one BatchGetItem per 100 orders (unprocessed keys asked again), read consistently (an order
        created a moment ago is found). An order that does not exist is left out."""
        found, names = {}, sorted(set(out_trade_nos))
        for start in range(0, len(names), 100):
            request = {self.table: {"Keys": [order_key(no) for no in names[start:start + 100]],
                                    "ProjectionExpression": "out_trade_no, product, total_amount",
                                    "ConsistentRead": True}}
            for attempt in range(attempts):
                if attempt:  # unprocessed keys: DynamoDB ran out of capacity, back off before asking again
                    self._back_off(RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)])
                answer = self._call("batch_get_item", RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table, []):
                    item = _load(item)
                    found[item["out_trade_no"]] = (item["product"], item["total_amount"])
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise Unavailable("DynamoDB batch_get_item: keys left unprocessed")
        return found

    def get_idempotency(self, key, now_epoch):
        """The live idempotency record of `key`, or None; expired ones count as absent (TTL deletes
        late, and moto never does)."""
        item = self._call("get_item", TableName=self.table, ConsistentRead=True,
                          Key={"pk": {"S": f"IDEMPOTENCY#{key}"}, "sk": {"S": IDEMPOTENCY_SK}}).get("Item")
        record = _load(item) if item else None
        return record if record and record[TTL_ATTRIBUTE] >= now_epoch else None

    # ---- writes --------------------------------------------------------------------------

    def create_order(self, order, idempotency=None, now_epoch=None):
        """Store a new order: one conditional put, or one transaction with the idempotency record.

        Raises ConditionFailed when the order (or the idempotency key) already exists.
        """
        item = _order_item(order)
        if idempotency is None:
            self._call("put_item", TableName=self.table, Item=item,
                       ConditionExpression="attribute_not_exists(pk)")
            return
        key, request_hash, purge_at = idempotency
        record = _dump({"pk": f"IDEMPOTENCY#{key}", "sk": IDEMPOTENCY_SK,
                        "out_trade_no": order["out_trade_no"], "request_hash": request_hash,
                        TTL_ATTRIBUTE: purge_at})
        # An expired record may still be there: TTL deletes late (and moto never does).
        self._call("transact_write_items", TransactItems=[
            {"Put": {"TableName": self.table, "Item": record,
                     "ConditionExpression": f"attribute_not_exists(pk) OR {TTL_ATTRIBUTE} < :now",
                     "ExpressionAttributeValues": {":now": {"N": str(now_epoch)}}}},
            {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}},
        ])

    def apply_change(self, out_trade_no, expected, updates, events=(), records=(), snapshot=None):
        """One transaction: the order's update, conditioned on `expected`, and its events.

        `expected`: the version, total_amount and whether the order is legacy, as the change was
        decided from; the version goes up by one and numbers the events. `updates` maps attributes
        to new values (None removes one). `events` are appended, each only if its key is new;
        `records` (refunds, which change status) are written whole: the version condition already
        guarantees nobody changed them since they were read. `snapshot` (the order's status and
        refunded_amount as this change leaves them) goes on every entry written, in the same
        transaction, for the events publisher. Raises ConditionFailed when any condition fails;
        nothing is written then.
        """
        # Every change bumps the version, so a read state is pinned by it alone. A change decided
        # without a read guessed its state from the report (orders.likely_state): status, amount
        # and product are checked too, since one version number can follow several histories.
        names = {"#status": "status"}
        values = {":version": expected.version, ":from": expected.status, ":total": expected.total_amount,
                  ":legacy": "legacy", ":one": 1}
        condition = ("version = :version AND #status = :from AND total_amount = :total AND "
                     + ("product = :legacy" if expected.product == "legacy" else "product <> :legacy"))
        sets, removes = ["version = :version + :one"], []
        for index, (name, value) in enumerate(sorted(updates.items())):
            names[f"#u{index}"] = name
            if value is None:
                removes.append(f"#u{index}")
            else:
                values[f":u{index}"] = value
                sets.append(f"#u{index} = :u{index}")
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        items = [{"Update": {
            "TableName": self.table, "Key": order_key(out_trade_no), "UpdateExpression": expression,
            "ConditionExpression": condition, "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": _dump(values)}}]
        seq = expected.version + 1
        extra = {"snapshot": snapshot} if snapshot else {}
        # Records before events, as GET /orders/{out_trade_no}/events lists them: a last refund
        # settles, then the order closes. moto's stream keeps a transaction's order; DynamoDB's does
        # not promise one among a transaction's records (README, "Delivery").
        for key, record in records:
            items.append({"Put": {"TableName": self.table, "Item": _event_item(
                out_trade_no, key, dict(record, seq=record.get("seq", seq), **extra))}})
        for key, event in events:
            items.append({"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(pk)",
                                  "Item": _event_item(out_trade_no, key, dict(event, seq=seq, **extra))}})
        self._call("transact_write_items", TransactItems=items)

    def due_orders(self, shard, now_epoch, start=None, limit=200):
        """One page of the orders in `shard` due at or before `now_epoch`, earliest first:
        ([(out_trade_no, due_at)], key to resume from or None). The index carries the keys, so
        nothing is read per item."""
        kwargs = {"ExclusiveStartKey": start} if start else {}
        page = self._call("query", TableName=self.table, IndexName=DUE_INDEX, Limit=limit,
                          KeyConditionExpression="due_shard = :s AND due_at <= :now",
                          ExpressionAttributeValues={":s": {"S": shard}, ":now": {"N": str(int(now_epoch))}},
                          **kwargs)
        found = [(item["pk"]["S"].split("#", 1)[1], int(item["due_at"]["N"])) for item in page.get("Items", [])]
        return found, page.get("LastEvaluatedKey")

    def lease(self, out_trade_no, seen_due_at, until_epoch):
        """Move an order's due time from the one a pass saw to `until_epoch`, so that the next pass
        does not send it again while a worker has it; False when it moved meanwhile."""
        try:
            self._call("update_item", TableName=self.table, Key=order_key(out_trade_no),
                       UpdateExpression="SET due_at = :until", ConditionExpression="due_at = :seen",
                       ExpressionAttributeValues={":until": {"N": str(int(until_epoch))},
                                                  ":seen": {"N": str(int(seen_due_at))}})
            return True
        except ConditionFailed:
            return False

    def reschedule(self, out_trade_no, version, at_epoch):
        """Bookkeeping after the worker acted on an order read at `version`: its next due time, or
        off the index. A change since then (a notification) wins: False, nothing written."""
        names = {"#s": "due_shard", "#a": "due_at"}
        condition = "version = :v"
        values = {":v": {"N": str(version)}}
        if at_epoch is None:
            expression = "REMOVE #s, #a"
        else:
            expression = "SET #s = :shard, #a = :at"
            values.update({":shard": {"S": due_shard(out_trade_no)}, ":at": {"N": str(int(at_epoch))}})
        try:
            self._call("update_item", TableName=self.table, Key=order_key(out_trade_no), UpdateExpression=expression,
                       ConditionExpression=condition, ExpressionAttributeNames=names, ExpressionAttributeValues=values)
            return True
        except ConditionFailed:
            return False

    def claim_refund_call(self, out_trade_no, now_epoch, spacing):
        """Claim the trade's next refund call: Alipay wants refund calls of one trade at least
        `spacing` seconds apart (§3.6), across every container. False: someone called too recently."""
        try:
            self._call("update_item", TableName=self.table, Key=order_key(out_trade_no),
                       UpdateExpression="SET refund_call_at = :now",
                       ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(refund_call_at) "
                                           "OR refund_call_at <= :earliest)",
                       ExpressionAttributeValues=_dump({":now": Decimal(str(now_epoch)),
                                                        ":earliest": Decimal(str(now_epoch - spacing))}))
            return True
        except ConditionFailed:
            return False

    def set_fields(self, out_trade_no, fields, only_if_absent=None):
        """Set bookkeeping fields that are not a change of state (a QR code, a reconcile step)."""
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":f{i}": value for i, value in enumerate(fields.values())}
        condition = "attribute_exists(pk)" + (f" AND attribute_not_exists({only_if_absent})" if only_if_absent else "")
        try:
            self._call("update_item", TableName=self.table, Key=order_key(out_trade_no),
                       UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
                       ConditionExpression=condition, ExpressionAttributeNames=names,
                       ExpressionAttributeValues=_dump(values))
            return True
        except ConditionFailed:
            return False

    def add_event(self, out_trade_no, key, event, seq, snapshot=None):
        """Append one event unless its key exists; False for a repeat. The order must exist."""
        event = dict(event, seq=seq, **({"snapshot": snapshot} if snapshot else {}))
        try:
            self._call("put_item", TableName=self.table, Item=_event_item(out_trade_no, key, event),
                       ConditionExpression="attribute_not_exists(pk)")
            return True
        except ConditionFailed:
            return False

    # ---- the one place AWS errors are classified -----------------------------------------

    def _back_off(self, delay):
        """Sleep about `delay` seconds, jittered (half to one and a half), so retries spread out."""
        self.sleep(delay * (0.5 + random.random()))

    def _call(self, operation, **kwargs):
        """One DynamoDB call, its refusals read by reason (contract, State machine):
        a failed condition -> ConditionFailed (the caller decides again); a transaction conflict
        or throttling -> retried after a jittered backoff, then Unavailable (503, retry later);
        anything else DynamoDB refuses (a ValidationException) -> InternalError, never retried:
        it would fail the same way forever."""
        for delay in RETRY_DELAYS + (None,):
            try:
                return getattr(self._client, operation)(**kwargs)
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                if code == "ConditionalCheckFailedException":
                    raise ConditionFailed(code) from None
                if code == "TransactionCanceledException":
                    reasons = {reason.get("Code") for reason in error.response.get("CancellationReasons", [])}
                    if "ConditionalCheckFailed" in reasons:
                        raise ConditionFailed(code) from None
                    retryable = bool(reasons) and reasons <= _RETRYABLE_REASONS | {"None"}
                    failure = f"DynamoDB {operation}: transaction cancelled ({', '.join(sorted(reasons - {'None'}))})"
                else:
                    retryable = code in _UNAVAILABLE_CODES
                    failure = f"DynamoDB {operation}: {code}"
                if not retryable:
                    raise InternalError(failure) from None
            except BotoCoreError as error:
                failure = f"DynamoDB {operation}: {type(error).__name__}"
            if delay is not None:
                self._back_off(delay)
        raise Unavailable(failure)


def _order_item(order):
    return _dump(dict(order, pk=f"ORDER#{order['out_trade_no']}", sk=ORDER_SK))


def _event_item(out_trade_no, key, event):
    return _dump({"pk": f"ORDER#{out_trade_no}", "sk": f"EVENT#{key}", "event": event})


def _public(item):
    """The stored order without its keys; DynamoDB numbers come back as Decimal."""
    return {key: value for key, value in item.items() if key not in ("pk", "sk", "due_shard", "due_at")}


# The table's layout (manage.py create-table, migrations) and its stream (the events publisher),
# each in a module of its own; their names are the store's.
from chalicelib.store.layout import (STREAM_VIEW_TYPE, NoStream, TableLayoutError, due_index,  # noqa: E402,F401
                                     ensure_table, latest_stream_arn, migrate_due, stream_specification,
                                     table_definition)
from chalicelib.store.streams import (StreamChange, UnreadableRecord, products_and_totals_in,  # noqa: E402,F401
                                      stream_change)
