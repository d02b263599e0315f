"""Concurrent deliveries apply once; AWS outages answer retryably and lose nothing.

Concurrency runs through the service layer from threads (traps.md: chalice.test.Client swaps
os.environ per request and a plain Chalice app shares current_request across threads), against
the moto server, which serves one request at a time as real DynamoDB's conditions would.
"""
import json
import os
import threading

import pytest

from chalicelib.service import Backend, Context, create, notifications
from tests.integration.helpers import create_order, events, get_order, notify


def deliver_concurrently(bodies):
    backend = Backend()
    barrier = threading.Barrier(len(bodies))
    answers = [None] * len(bodies)

    def worker(index, body):
        barrier.wait()
        answers[index] = notifications.handle(Context(backend), body)

    threads = [threading.Thread(target=worker, args=(i, body)) for i, body in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


@pytest.mark.parametrize("round_", range(3))
def test_32_concurrent_deliveries_of_one_notification_apply_once(client, merchant, round_):
    order = create_order(client, merchant, total_amount="12.34")
    body = merchant.notification(order["out_trade_no"], "12.34", notify_id=f"same-{round_}")
    answers = deliver_concurrently([body] * 32)
    assert all(a.status == 200 and a.body == "success" for a in answers), {a.outcome for a in answers}
    assert sorted(a.outcome for a in answers).count("applied") == 1
    trail = events(client, merchant, order["out_trade_no"])
    assert [(e["type"], e.get("to")) for e in trail] == [("created", None), ("transition", "TRADE_SUCCESS")]
    assert get_order(client, merchant, order["out_trade_no"])[1]["status"] == "TRADE_SUCCESS"


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_success_and_finished_end_finished_with_each_event_once(client, merchant, round_):
    order = create_order(client, merchant, total_amount="5.00")
    no = order["out_trade_no"]
    success = merchant.notification(no, "5.00", "TRADE_SUCCESS", notify_id=f"s-{round_}")
    finished = merchant.notification(no, "5.00", "TRADE_FINISHED", notify_id=f"f-{round_}")
    answers = deliver_concurrently([success, finished] * 16)
    assert all(a.status == 200 and a.body == "success" for a in answers)
    trail = [(e.get("from"), e.get("to")) for e in events(client, merchant, no) if e["type"] == "transition"]
    assert trail in ([("WAIT_BUYER_PAY", "TRADE_SUCCESS"), ("TRADE_SUCCESS", "TRADE_FINISHED")],
                     [("WAIT_BUYER_PAY", "TRADE_FINISHED")])
    assert sum(a.outcome == "applied" for a in answers) == len(trail)
    assert get_order(client, merchant, no)[1]["status"] == "TRADE_FINISHED"


def test_dynamodb_down_gives_503_and_the_redelivery_applies_once(client, merchant, moto, aws, env):
    order = create_order(client, merchant, total_amount="20.00")
    no = order["out_trade_no"]
    body = merchant.notification(no, "20.00", notify_id="during-outage")
    moto.stop()
    try:
        assert notify(client, body)[:2] == (503, "failure")
        r = client.http.post("/orders", headers={**merchant.auth, "Content-Type": "application/json"},
                             body=json.dumps({"product": "page", "subject": "s", "total_amount": "1.00",
                                              "out_trade_no": "DURING_OUTAGE"}))
        assert r.status_code == 503 and json.loads(r.body)["error"]["code"] == "unavailable"
    finally:
        moto.start()
    assert get_order(client, merchant, no)[1]["status"] == "WAIT_BUYER_PAY"
    assert get_order(client, merchant, "DURING_OUTAGE")[0] == 404
    for _ in range(2):  # Alipay delivers again; then once more
        assert notify(client, body)[:2] == (200, "success")
    trail = events(client, merchant, no)
    assert [e["type"] for e in trail] == ["created", "transition"]


def test_secrets_manager_down_gives_503(client, merchant, moto, env):
    order = create_order(client, merchant, total_amount="1.00")
    os.environ["SECRET_TTL_SECONDS"] = "0"  # fetched for every request
    moto.stop()
    try:
        assert notify(client, merchant.notification(order["out_trade_no"], "1.00"))[:2] == (503, "failure")
    finally:
        moto.start()
    assert get_order(client, merchant, order["out_trade_no"])[1]["status"] == "WAIT_BUYER_PAY"


def test_missing_secret_gives_503_everywhere(client, env):
    os.environ["ALIPAY_SECRET_ID"] = "no/such/secret"
    assert notify(client, b"a=b&sign=x")[:2] == (503, "failure")
    r = client.http.post("/orders", headers={"Authorization": "Bearer x", "Content-Type": "application/json"},
                         body="{}")
    assert r.status_code == 503 and json.loads(r.body)["error"]["code"] == "unavailable"


def test_secret_fetched_once_per_warm_container(merchant, aws, env):
    calls = []
    backend = Backend()
    real = backend.client("secretsmanager")

    class Counting:
        def get_secret_value(self, **kwargs):
            calls.append(kwargs)
            return real.get_secret_value(**kwargs)

    backend._clients["secretsmanager"] = Counting()
    service = Context(backend)
    for _ in range(5):
        service.merchant()
    assert len(calls) == 1
    os.environ["SECRET_TTL_SECONDS"] = "0"
    Context(backend).merchant()
    assert len(calls) == 2


def test_common_path_costs_one_dynamodb_round_trip(client, merchant, env):
    """A create is one conditional put and a payment notification one transaction; no secret
    fetch once the container is warm."""
    backend = Backend()
    calls = []
    for name in ("dynamodb", "secretsmanager"):
        real = backend.client(name)
        real.meta.events.register("before-call", lambda model, **kw: calls.append(model.name))
    service = Context(backend)
    service.merchant()  # warm
    calls.clear()
    status, order = create.create_order(service, "actor123", {"product": "app", "subject": "s",
                                                             "total_amount": "1.00"}, None, "https://pay.example")
    assert status == 201 and calls == ["PutItem"]
    calls.clear()
    answer = notifications.handle(service, merchant.notification(order["out_trade_no"], "1.00"))
    assert answer.outcome == "applied" and calls == ["TransactWriteItems"]
    calls.clear()
    status, _ = create.create_order(service, "actor123", {"product": "app", "subject": "s", "total_amount": "1.00"},
                                     "idem-1", "https://pay.example")
    assert status == 201 and calls == ["TransactWriteItems"]  # the key and the order, one transaction
