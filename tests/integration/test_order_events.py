"""Order events (issue 14): the table's stream, read from the moto server, handed to the app's
`publish_events` handler; EventBridge on the same server, whose rule delivers to an SQS queue that
the tests read. Every Detail that reaches the queue is checked against docs/order-event.schema.json."""
import json
import os

import jsonschema
import pytest

from chalicelib.service import publish
from tests.integration.events_support import SCHEMA, Bus, StreamFunction, story
from tests.integration.helpers import create_order, notify
from tests.integration.helpers import reconcile_pass, refund_calls_allowed_again
from tests.integration.test_money import SYSTEM_ERROR, refund, refund_found, refunded
from tests.support import set_environment

W, S, F, C = "WAIT_BUYER_PAY", "TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED"


@pytest.fixture
def bus(env):
    name = f"bus-{env['ORDERS_TABLE']}"
    restore = set_environment({"EVENT_BUS_NAME": name})
    yield Bus(name)
    restore()


@pytest.fixture
def stream(client, env, bus):
    return StreamFunction(client, env["ORDERS_TABLE"])


def new_order(client, merchant, product, alipay, total="20.00"):
    if product == "qr":  # stored first, then precreate; the QR code is a change nobody is told about
        alipay.script("alipay.trade.precreate", {"code": "10000", "msg": "Success", "qr_code": "https://qr.test/x"})
    return create_order(client, merchant, product=product, total_amount=total)["out_trade_no"]


def alipay_reports(client, merchant, mapi, product, no, status, total="20.00"):
    if product == "legacy":
        notify_id = f"{no}-{status}"
        mapi.valid.add(notify_id)
        body = merchant.legacy_notification(no, total, trade_status=status, notify_id=notify_id)
    else:
        body = merchant.notification(no, total, status, notify_id=f"{no}-{status}")
    assert notify(client, body)[:2] == (200, "success")
    return body


STORIES = {
    # Alipay's notifications -> the events published, with the order's status as each left it.
    "paid then finished": ((S, S, F), [("order.created", W), ("order.paid", S), ("order.finished", F)]),
    "finished at once": ((F,), [("order.created", W), ("order.paid", F)]),
    "closed unpaid": ((C,), [("order.created", W), ("order.closed", C)]),
}


@pytest.mark.parametrize("product", ["page", "wap", "app", "qr", "legacy"])
@pytest.mark.parametrize("name", list(STORIES))
def test_each_transition_of_each_product_publishes_exactly_one_event_of_its_type_in_order(
        client, merchant, alipay, mapi, bus, stream, product, name):
    reports, expected = STORIES[name]
    first, second = new_order(client, merchant, product, alipay), new_order(client, merchant, product, alipay)
    for status in reports:  # interleaved: each order's events stay in its own order
        alipay_reports(client, merchant, mapi, product, first, status)
        alipay_reports(client, merchant, mapi, product, second, status)
    alipay_reports(client, merchant, mapi, product, first, reports[-1])  # redelivered: changes and publishes nothing
    records, failed = stream.run()
    assert failed == 0 and records > 0
    got = bus.received()
    for no in (first, second):
        assert [(kind, status) for kind, status, _ in story(got, no)] == expected
        details = [e["detail"] for e in got if e["detail"]["out_trade_no"] == no]
        assert {d["product"] for d in details} == {product} and {d["total_amount"] for d in details} == {"20.00"}
        assert len({d["id"] for d in details}) == len(details)
    assert len(got) == 2 * len(expected)
    assert all(answer == {"batchItemFailures": []} for _, answer in stream.calls)


def test_a_redelivered_stream_batch_publishes_the_same_events_with_the_same_ids(client, merchant, bus, stream):
    no = create_order(client, merchant, total_amount="5.00")["out_trade_no"]
    notify(client, merchant.notification(no, "5.00"))
    stream.run()
    first = bus.received()
    assert stream.redeliver(0) == {"batchItemFailures": []}  # the same Lambda event, again
    again = bus.received()
    assert [e["detail"] for e in again] == [e["detail"] for e in first]
    assert [e["detail-type"] for e in first] == ["order.created", "order.paid"]


def test_a_reader_that_follows_sees_every_change_after_a_failed_transaction(client, merchant, bus, stream):
    """moto puts a copy of the table back when a transaction fails (its stream shard included):
    the reader asks for a fresh iterator at its position on every read, and sees no phantom."""
    no = create_order(client, merchant, total_amount="5.00")["out_trade_no"]
    paid = merchant.notification(no, "5.00")
    notify(client, paid)
    stream.run()
    notify(client, paid)  # decided from the report alone, its transaction fails on the version
    notify(client, merchant.notification(no, "5.00", "TRADE_FINISHED"))
    stream.run()
    assert [e["detail-type"] for e in bus.received()] == ["order.created", "order.paid", "order.finished"]


def test_a_transaction_cancelled_while_the_reader_pages_leaves_no_phantom_and_skips_nothing(client, merchant, bus, env):
    """A duplicate notification whose guessed state loses while the reader is between two pages, on
    iterators it already holds: DynamoDB writes no record of a cancelled transaction, and the local
    moto must not either (localaws.MotoServer). Two `order.paid` reached the demo shop so once."""
    no = create_order(client, merchant, total_amount="5.00")["out_trade_no"]
    notify(client, merchant.notification(no, "5.00"))
    again = merchant.notification(no, "5.00", notify_id=f"{no}-again")  # a new notify_id: a new event key
    stream = StreamFunction(client, env["ORDERS_TABLE"], batch_size=1)

    def handle(records):
        if not stream.calls:
            assert notify(client, again)[:2] == (200, "success")  # acknowledged, nothing changed
        return stream.handle(records)
    stream.reader.read_once(handle)
    notify(client, merchant.notification(no, "5.00", "TRADE_FINISHED"))
    stream.run()
    assert [e["detail-type"] for e in bus.received()] == ["order.created", "order.paid", "order.finished"]


def test_following_survives_a_failed_read_and_reads_the_same_records_again(client, merchant, env):
    import boto3

    import streamreader
    from chalicelib import store
    create_order(client, merchant, total_amount="1.00")
    reader = streamreader.StreamReader(boto3.client("dynamodbstreams"),
                                  store.latest_stream_arn(boto3.client("dynamodb"), env["ORDERS_TABLE"]))
    seen, errors, rounds = [], [], iter(range(3))

    def handle(records):
        seen.append([r["dynamodb"]["SequenceNumber"] for r in records])
        if len(seen) == 1:
            raise ConnectionError("the local AWS went away")
        return []
    reader.follow(handle, poll_seconds=0, stop=lambda: next(rounds, None) is None, on_error=errors.append)
    assert len(seen) == 2 and seen[0] == seen[1] and [type(e) for e in errors] == [ConnectionError]


def test_a_record_failing_after_ten_retries_is_given_up_and_reading_goes_on_after_it(client, merchant, env):
    """As the deployed mapping does (MaximumRetryAttempts 10, then its dead-letter queue); a record
    that fails a few times and then publishes is not given up."""
    import boto3

    import streamreader
    from chalicelib import store
    create_order(client, merchant, total_amount="1.00")
    create_order(client, merchant, total_amount="2.00")
    arn = store.latest_stream_arn(boto3.client("dynamodb"), env["ORDERS_TABLE"])
    numbers, given_up, reads = [], [], []
    streamreader.StreamReader(boto3.client("dynamodbstreams"), arn).read_once(
        lambda batch: numbers.extend(r["dynamodb"]["SequenceNumber"] for r in batch))
    assert len(numbers) == 2  # each order's INSERT
    reader = streamreader.StreamReader(boto3.client("dynamodbstreams"), arn,
                                  give_up=lambda shard, number: given_up.append(number))
    flaky = iter([True, True, True])  # the first record fails three times, then publishes

    def handle(records):
        reads.append([r["dynamodb"]["SequenceNumber"] for r in records])
        if records[0]["dynamodb"]["SequenceNumber"] == numbers[0] and next(flaky, False):
            return [numbers[0]]
        return [numbers[1]] if numbers[1] in reads[-1] else []
    for _ in range(3 + 11):
        reader.read_once(handle)
    assert reads[:4] == [numbers] * 4 and given_up == [numbers[1]]
    assert reads[4:] == [[numbers[1]]] * 10  # 1 failure at the fourth read, then 10 retries
    reader.read_once(handle)
    assert len(reads) == 14  # nothing left to read


def test_order_items_changes_without_an_event_item_are_not_published(client, merchant, bus, stream, aws, env):
    no = create_order(client, merchant, total_amount="5.00")["out_trade_no"]
    # Bookkeeping on the order item (a QR code, a reconcile step) is not a change merchants act on.
    aws["dynamodb"].update_item(TableName=env["ORDERS_TABLE"], Key={"pk": {"S": f"ORDER#{no}"}, "sk": {"S": "ORDER"}},
                                UpdateExpression="SET reconcile_step = :s", ExpressionAttributeValues={":s": {"N": "1"}})
    records, failed = stream.run()
    assert (records, failed) == (2, 0)
    assert [e["detail-type"] for e in bus.received()] == ["order.created"]


@pytest.fixture
def refuse_entries_of(client):
    """EventBridge refusing the entries of some orders: their Detail is made malformed on the wire,
    so that the moto server answers those entries with its own MalformedDetail error."""
    import app as app_module
    events = app_module.service().backend.client("events")
    refused = set()

    def corrupt(params, **_):
        for entry in params.get("Entries", []):
            if json.loads(entry["Detail"])["out_trade_no"] in refused:
                entry["Detail"] = "{not json"
    events.meta.events.register("provide-client-params.events.PutEvents", corrupt)
    yield refused
    events.meta.events.unregister("provide-client-params.events.PutEvents", corrupt)


def test_a_put_events_partial_failure_reports_exactly_the_unpublished_records(
        client, merchant, bus, stream, refuse_entries_of):
    orders = [create_order(client, merchant, total_amount="3.00")["out_trade_no"] for _ in range(3)]
    for no in orders:
        notify(client, merchant.notification(no, "3.00"))
    refuse_entries_of.add(orders[1])
    records, failed = stream.run()
    delivered, answer = stream.calls[0]
    of_order = {r["dynamodb"]["SequenceNumber"]: r["dynamodb"]["Keys"]["pk"]["S"] for r in delivered}
    reported = [f["itemIdentifier"] for f in answer["batchItemFailures"]]
    # The refused order's records, and nothing else: its created (refused) and its paid (not
    # attempted after that, so that its events never overtake each other).
    assert [of_order[n] for n in reported] == [f"ORDER#{orders[1]}"] * 2 and failed == 2
    first = bus.received()
    assert {e["detail"]["out_trade_no"] for e in first} == {orders[0], orders[2]} and len(first) == 4
    refuse_entries_of.clear()
    stream.run()  # Lambda's retry: from the first reported record on
    again = bus.received()
    assert story(again, orders[1]) == [("order.created", W, "0.00"), ("order.paid", S, "0.00")]
    redelivered = {e["detail"]["id"] for e in again if e["detail"]["out_trade_no"] == orders[2]}
    assert redelivered == {e["detail"]["id"] for e in first if e["detail"]["out_trade_no"] == orders[2]}


def test_a_later_event_of_a_refused_order_is_reported_while_other_orders_publish(
        client, merchant, bus, stream, refuse_entries_of):
    no, other = (create_order(client, merchant, total_amount="3.00")["out_trade_no"] for _ in range(2))
    stream.run()
    assert len(bus.received()) == 2
    notify(client, merchant.notification(no, "3.00"))
    notify(client, merchant.notification(other, "3.00"))
    refuse_entries_of.add(no)
    stream.run()
    delivered, answer = stream.calls[-1]
    keys = {r["dynamodb"]["SequenceNumber"]: (r["dynamodb"]["Keys"]["pk"]["S"], r["dynamodb"]["Keys"]["sk"]["S"][:6])
            for r in delivered}
    assert [keys[f["itemIdentifier"]] for f in answer["batchItemFailures"]] == [(f"ORDER#{no}", "EVENT#")]
    assert story(bus.received()) == [("order.paid", S, "0.00")]


def test_an_unreachable_bus_reports_every_record_and_the_retry_publishes_them(client, merchant, env, stream):
    restore = set_environment({"EVENT_BUS_NAME": f"missing-{env['ORDERS_TABLE']}"})
    try:
        create_order(client, merchant, total_amount="1.00")
        create_order(client, merchant, total_amount="2.00")
        assert stream.run() == (2, 2)
        delivered, answer = stream.calls[0]
        assert [f["itemIdentifier"] for f in answer["batchItemFailures"]] == \
            [r["dynamodb"]["SequenceNumber"] for r in delivered]
        bus = Bus(os.environ["EVENT_BUS_NAME"])
        assert stream.run() == (2, 0)
        assert [e["detail"]["total_amount"] for e in bus.received()] == ["1.00", "2.00"]
    finally:
        restore()


def test_a_refund_story_end_to_end(client, merchant, alipay, bus, stream, aws, env):
    no = create_order(client, merchant, total_amount="10.00")["out_trade_no"]
    notify(client, merchant.notification(no, "10.00"))
    alipay.script("alipay.trade.refund", refunded("4.00"))
    assert refund(client, merchant, no, "4.00", "R1")[0] == 201
    alipay.script("alipay.trade.refund", {"code": "40004", "msg": "Business Failed",
                                          "sub_code": "ACQ.SELLER_BALANCE_NOT_ENOUGH", "sub_msg": "余额不足"})
    refund_calls_allowed_again(aws, env["ORDERS_TABLE"], no)  # Alipay's 3 s between refund calls
    assert refund(client, merchant, no, "1.00", "R3")[0] == 422
    alipay.script("alipay.trade.refund", SYSTEM_ERROR)
    refund_calls_allowed_again(aws, env["ORDERS_TABLE"], no)
    assert refund(client, merchant, no, "6.00", "R2")[0] == 202
    stream.run()
    got = bus.received()
    assert story(got) == [("order.created", W, "0.00"), ("order.paid", S, "0.00"),
                          ("order.refund.pending", S, "0.00"), ("order.refund.succeeded", S, "4.00"),
                          ("order.refund.pending", S, "4.00"), ("order.refund.failed", S, "4.00"),
                          ("order.refund.pending", S, "4.00")]
    assert got[5]["detail"]["event"]["sub_code"] == "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    r1 = [e["detail"] for e in got if e["detail"]["event"].get("out_request_no") == "R1"]
    assert r1[0]["id"] != r1[1]["id"] and r1[1]["event"]["refund_amount"] == "4.00"
    assert r1[1]["event"]["status"] == "REFUND_SUCCESS" and r1[1]["at"] == r1[1]["event"]["settled_at"]
    alipay.script("alipay.trade.fastpay.refund.query", refund_found("6.00"))
    reconcile_pass()  # settles R2: the order is fully refunded, so it closes in the same write
    stream.run()
    last = bus.received()
    # moto's stream keeps the order in which the transaction wrote them: ours, as the events list them.
    assert story(last) == [("order.refund.succeeded", C, "10.00"), ("order.closed", C, "10.00")]
    assert [e["detail"]["event"]["type"] for e in last] == [
        e["type"] for e in client.http.get(f"/orders/{no}/events", headers=merchant.auth).json_body["events"][-2:]]
    # The request sent to Alipay (kept for a byte-for-byte resend) stays in the table.
    assert not any("request" in e["detail"]["event"] or "snapshot" in e["detail"]["event"] for e in got + last)


def test_an_anomaly_story_end_to_end(client, merchant, alipay, bus, stream):
    no = create_order(client, merchant, total_amount="8.00")["out_trade_no"]
    # A verified notification with the wrong amount: refused, recorded, published; the order unchanged.
    assert notify(client, merchant.notification(no, "0.01", notify_id="wrong"))[0] == 422
    assert notify(client, merchant.notification(no, "0.01", notify_id="wrong"))[0] == 422  # once
    alipay.script("alipay.trade.close", {"code": "10000", "msg": "Success", "out_trade_no": no})
    assert client.http.post(f"/orders/{no}/close", headers=merchant.auth).status_code == 200
    # Then Alipay says it was paid after all: paid, with the anomaly, in one write.
    assert notify(client, merchant.notification(no, "8.00"))[:2] == (200, "success")
    stream.run()
    got = bus.received()
    assert story(got)[:3] == [("order.created", W, "0.00"), ("order.anomaly", W, "0.00"), ("order.closed", C, "0.00")]
    assert sorted(story(got)[3:]) == [("order.anomaly", S, "0.00"), ("order.paid", S, "0.00")]
    reasons = [e["detail"]["event"]["reason"] for e in got if e["detail-type"] == "order.anomaly"]
    assert reasons[0] == "amount_mismatch" and reasons[1] == "paid_after_local_close"


def test_the_schema_refuses_what_the_contract_forbids():
    detail = {"version": 1, "id": "0" * 32, "out_trade_no": "A1", "status": W, "product": "page",
              "total_amount": "1.00", "refunded_amount": "0.00", "at": "2026-12-01T10:00:00.000Z", "source": "api",
              "event": {"at": "2026-12-01T10:00:00.000Z", "source": "api", "type": "created"}}
    jsonschema.validate(detail, SCHEMA)
    for bad in ({"total_amount": 1.0}, {"refunded_amount": "1"}, {"id": None}, {"status": "PAID"},
                {"event": {"at": "2026-12-01T10:00:00Z", "source": "api", "type": "transition"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(dict(detail, **bad), SCHEMA)


# ---- manage.py: create-table gives the stream and the bus; publish-events runs the publisher --------

def bare_table(aws, name, **extra):
    """A table as an older version of this service left it: keys only."""
    aws["dynamodb"].create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                                 AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
                                 KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                            {"AttributeName": "sk", "KeyType": "RANGE"}], **extra)


def test_create_table_enables_the_stream_on_an_existing_table_and_makes_the_bus(aws, env):
    from tests.integration.test_manage import manage
    table, bus_name = f"{env['ORDERS_TABLE']}-old", f"bus-{env['ORDERS_TABLE']}-new"
    restore = set_environment({"ORDERS_TABLE": table, "EVENT_BUS_NAME": bus_name})
    try:
        bare_table(aws, table)
        code, out, _ = manage("create-table")
        assert code == 0 and "enabled stream (NEW_AND_OLD_IMAGES)" in out and f"created event bus {bus_name}" in out
        stream = aws["dynamodb"].describe_table(TableName=table)["Table"]["StreamSpecification"]
        assert stream == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
        code, out, _ = manage("create-table")
        assert code == 0 and "stream" not in out and f"event bus {bus_name} exists" in out
        os.environ["ORDERS_TABLE"] = f"{table}-keys"
        bare_table(aws, os.environ["ORDERS_TABLE"],
                   StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
        code, _, err = manage("create-table")
        assert code == 1 and "KEYS_ONLY" in err and "StreamEnabled=false" in err
    finally:
        restore()


def test_publish_events_publishes_from_the_oldest_record_and_again_with_the_same_ids(client, merchant, bus):
    from tests.integration.test_manage import manage
    no = create_order(client, merchant, total_amount="7.00")["out_trade_no"]
    notify(client, merchant.notification(no, "7.00"))
    code, out, _ = manage("publish-events")
    assert code == 0 and json.loads(out) == {"records": 3, "events": 2, "failed": 0, "given_up": 0}
    first = bus.received()
    assert story(first) == [("order.created", W, "0.00"), ("order.paid", S, "0.00")]
    code, out, _ = manage("publish-events")
    assert code == 0 and json.loads(out)["events"] == 2
    assert [e["detail"] for e in bus.received()] == [e["detail"] for e in first]


def test_publish_events_fails_with_the_reason_on_a_table_without_stream(aws, env):
    from tests.integration.test_manage import manage
    restore = set_environment({"ORDERS_TABLE": f"{env['ORDERS_TABLE']}-nostream"})
    try:
        bare_table(aws, os.environ["ORDERS_TABLE"])
        code, _, err = manage("publish-events")
        assert code == 1 and "create-table" in err
    finally:
        restore()


def test_an_orders_product_and_total_come_from_the_batch_when_its_item_is_in_it(client, merchant, bus, env):
    """Every change writes the order item with its event: the batch carries the product and total,
    and only a batch without the order's item reads them (one BatchGetItem)."""
    import boto3

    import streamreader
    from chalicelib import store
    from chalicelib.service import Backend, Context
    from tests.integration.events_support import lambda_records
    no = create_order(client, merchant, total_amount="20.00")["out_trade_no"]
    assert notify(client, merchant.notification(no, "20.00"))[:2] == (200, "success")
    arn = store.latest_stream_arn(boto3.client("dynamodb"), env["ORDERS_TABLE"])
    records = []
    streamreader.StreamReader(boto3.client("dynamodbstreams"), arn).read_once(lambda batch: records.extend(batch) or [])
    ours = [r for r in lambda_records(records, arn)["Records"] if r["dynamodb"]["Keys"]["pk"]["S"] == f"ORDER#{no}"]
    events_only = [r for r in ours if r["dynamodb"]["Keys"]["sk"]["S"] != "ORDER"]
    ctx, reads = Context(Backend()), []
    call = ctx.store._call
    ctx.store._call = lambda operation, **kwargs: reads.append(operation) or call(operation, **kwargs)
    assert publish.publish(ctx, ours).events == 2 and reads == []  # order.created and order.paid
    assert publish.publish(ctx, events_only).events == 1 and reads == ["batch_get_item"]
