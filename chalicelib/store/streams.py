"""Stream records of the table, as the events publisher needs them (contract, "Order events"):
only the store knows which item is an order, an event or a refund record."""
from typing import NamedTuple, Optional

from chalicelib.store import ORDER_SK, _load, _public

_REFUND_SK = "EVENT#refund#"


class UnreadableRecord(Exception):
    """A stream record of an order that cannot be turned into an event (no new image, no entry)."""

    def __init__(self, out_trade_no, reason):
        super().__init__(reason)
        self.out_trade_no = out_trade_no


class StreamChange(NamedTuple):
    """A stream record that is published: a new order, or an entry of its events."""
    out_trade_no: str
    identity: str             # the item, and for a refund record its status and amount: the event's id
    order: Optional[dict]     # the new order (its item's INSERT), or None
    entry: Optional[dict]     # the event item's entry (with its snapshot), or None


def stream_change(record):
    """What one stream record (as Lambda delivers it, or as GetRecords returns it) publishes:
    an order item's INSERT (order.created), an event item's INSERT, a refund record's rewrite that
    changed its status or amount. None for everything else: other changes of an order item (the
    event item written in the same transaction tells them), idempotency records, removals."""
    data = record.get("dynamodb") or {}
    keys = _load(data.get("Keys") or {})
    pk, sk = str(keys.get("pk", "")), str(keys.get("sk", ""))
    if not pk.startswith("ORDER#") or record.get("eventName") not in ("INSERT", "MODIFY"):
        return None
    out_trade_no, inserted = pk.split("#", 1)[1], record["eventName"] == "INSERT"
    if sk == ORDER_SK:
        if not inserted:
            return None
        return StreamChange(out_trade_no, f"{pk}|{sk}", _public(_new_image(out_trade_no, data)), None)
    if not sk.startswith("EVENT#") or not inserted and not sk.startswith(_REFUND_SK):
        return None  # event items are append-only; only refund records are rewritten
    entry = _new_image(out_trade_no, data).get("event")
    if not isinstance(entry, dict) or not isinstance(entry.get("snapshot"), dict):
        raise UnreadableRecord(out_trade_no, f"{sk}: no entry with the order's snapshot")
    if not sk.startswith(_REFUND_SK):
        return StreamChange(out_trade_no, f"{pk}|{sk}", None, entry)
    published = (entry.get("status"), entry.get("refund_amount"))
    before = _load(data.get("OldImage") or {}).get("event") or {}
    if not inserted and published == (before.get("status"), before.get("refund_amount")):
        return None
    return StreamChange(out_trade_no, f"{pk}|{sk}|{published[0]}|{published[1]}", None, entry)


def _new_image(out_trade_no, data):
    if not data.get("NewImage"):
        raise UnreadableRecord(out_trade_no, "the stream record has no new image (stream view type?)")
    return _load(data["NewImage"])


def products_and_totals_in(records):
    """{out_trade_no: (product, total_amount)} from the order items' new images among `records`:
    an order's INSERT, and the MODIFY that every change of it writes in the same transaction as its
    event. Neither value changes after an order is created."""
    found = {}
    for record in records:
        data = record.get("dynamodb") or {}
        keys, image = data.get("Keys") or {}, data.get("NewImage") or {}
        if keys.get("sk", {}).get("S") == ORDER_SK and "product" in image and "total_amount" in image:
            item = _load({name: image[name] for name in ("out_trade_no", "product", "total_amount")})
            found[item["out_trade_no"]] = (item["product"], item["total_amount"])
    return found
