"""Which stream records are published (chalicelib.store.stream_change), and with which identity:
records shaped as DynamoDB Streams delivers them, no AWS needed."""
import pytest
from boto3.dynamodb.types import TypeSerializer

from chalicelib import store

_typed = TypeSerializer().serialize


def record(name, sk, new=None, old=None, pk="ORDER#A1"):
    data = {"Keys": {"pk": _typed(pk), "sk": _typed(sk)}, "SequenceNumber": "1"}
    for key, image in (("NewImage", new), ("OldImage", old)):
        if image is not None:
            data[key] = {k: _typed(v) for k, v in dict(image, pk=pk, sk=sk).items()}
    return {"eventName": name, "dynamodb": data}


def refund(status, amount, **extra):
    return {"event": {"type": "refund", "out_request_no": "R1", "status": status, "at": "t", "source": "api",
                      "snapshot": {"status": "TRADE_SUCCESS", "refunded_amount": "0.00"},
                      **({"refund_amount": amount} if amount else {}), **extra}}


ORDER = {"out_trade_no": "A1", "status": "WAIT_BUYER_PAY", "product": "page", "total_amount": 1, "version": 0}


def test_a_new_order_is_published_and_its_later_changes_are_not():
    change = store.stream_change(record("INSERT", "ORDER", ORDER))
    assert change.out_trade_no == "A1" and change.order["product"] == "page" and change.entry is None
    assert store.stream_change(record("MODIFY", "ORDER", dict(ORDER, status="TRADE_SUCCESS"), ORDER)) is None


def test_a_refund_record_is_published_when_its_status_or_amount_changes_and_only_then():
    pending, succeeded = refund("REFUND_PENDING", "4.00"), refund("REFUND_SUCCESS", "4.00")
    first = store.stream_change(record("INSERT", "EVENT#refund#R1", pending))
    second = store.stream_change(record("MODIFY", "EVENT#refund#R1", succeeded, pending))
    assert first.identity != second.identity and second.entry["status"] == "REFUND_SUCCESS"
    rewritten = refund("REFUND_SUCCESS", "4.00", notify_id="n1")  # nothing a consumer sees changed
    assert store.stream_change(record("MODIFY", "EVENT#refund#R1", rewritten, succeeded)) is None
    console, learned = refund("REFUND_SUCCESS", None), refund("REFUND_SUCCESS", "2.50")
    assert store.stream_change(record("MODIFY", "EVENT#refund#R1", learned, console)).identity.endswith("|2.50")
    # Without old images (a NEW_IMAGE stream) every rewrite is published: the same id again.
    assert store.stream_change(record("MODIFY", "EVENT#refund#R1", succeeded)).identity == second.identity


@pytest.mark.parametrize("name,sk,pk", [("REMOVE", "ORDER", "ORDER#A1"), ("INSERT", "IDEMPOTENCY", "IDEMPOTENCY#k"),
                                        ("MODIFY", "EVENT#notify#x#TRADE_SUCCESS", "ORDER#A1")])
def test_removals_idempotency_records_and_rewrites_of_plain_events_are_not_published(name, sk, pk):
    assert store.stream_change(record(name, sk, {"event": {"type": "transition"}}, pk=pk)) is None


def test_a_record_without_its_new_image_or_snapshot_is_unreadable_not_skipped():
    with pytest.raises(store.UnreadableRecord) as raised:
        store.stream_change(record("INSERT", "EVENT#notify#x#TRADE_SUCCESS"))
    assert raised.value.out_trade_no == "A1"
    with pytest.raises(store.UnreadableRecord):
        store.stream_change(record("INSERT", "EVENT#anomaly#x", {"event": {"type": "anomaly", "at": "t"}}))
