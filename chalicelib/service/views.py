"""Orders, refunds and events as the API shows them (contract, GET /orders/{out_trade_no})."""
from chalicelib import orders
from chalicelib.alipay.money import format_amount

# Stored on an event for the events publisher (the order as that entry left it); not listed.
_HIDDEN = ("seq", "snapshot", "request", "attempts", "sent_at")


def order_state(order):
    return orders.OrderState(status=order["status"], total_amount=order["total_amount"],
                             refunded_amount=order.get("refunded_amount", 0), closed_locally=bool(order.get("closed_locally")), product=order["product"],
                             version=int(order.get("version", 0)))


def refund_entry(record):
    entry = {"out_request_no": record["out_request_no"], "status": record["status"], "at": record["at"]}
    if record.get("refund_amount") is not None:  # a console refund's amount may not be known yet
        entry["refund_amount"] = record["refund_amount"]
    if record.get("sub_code"):
        entry["sub_code"] = record["sub_code"]
    return entry


def order_view(order, events):
    view = {
        "out_trade_no": order["out_trade_no"], "status": order["status"], "product": order["product"],
        "subject": order["subject"], "total_amount": format_amount(order["total_amount"]),
        "refunded_amount": format_amount(order.get("refunded_amount", 0)),
        "refunds": [refund_entry(e) for e in sorted(events, key=lambda e: e["at"]) if e.get("type") == "refund"],
        "created_at": order["created_at"], "updated_at": order["updated_at"],
    }
    for name in ("expires_at", "trade_no", "buyer_id", "paid_at"):
        if order.get(name):
            view[name] = order[name]
    return view


def refund_view(record, order_view_):
    return dict(refund_entry(record), refund_amount=record.get("refund_amount"), order=order_view_)


def event_list(order, events):
    """Oldest first; seq is the order's version when the entry was written (timestamps of racing
    writers may tie)."""
    # One write may hold a refund and the close it caused: the refund first.
    trail = sorted([created_entry(order)] + events,
                   key=lambda e: (int(e.get("seq", 0)), e["at"], e.get("type") != "refund"))
    return [listed(event) for event in trail]


def created_entry(order):
    """The first entry of every order: it has no event item, the order item's creation is it."""
    return {"at": order["created_at"], "source": "api", "type": "created", "actor": order.get("actor"), "seq": 0}


def listed(event):
    """An event as JSON: DynamoDB numbers would come back as Decimal; ours are strings already."""
    return {key: (str(value) if not isinstance(value, (str, bool, list, dict)) else value)
            for key, value in event.items() if value is not None and key not in _HIDDEN}
