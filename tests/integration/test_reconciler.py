"""The reconciler at scale (issue "The reconciler at a thousand orders a second"): a pass that
touches only what is due, a worker per order behind an SQS queue, refund calls spaced by a
conditional claim, the poll fast lane. Over the moto server (DynamoDB and SQS) and a scripted,
signing Alipay."""
import datetime
import json
import os


import app
import sqsdrain
from chalicelib import settings, store
from chalicelib.service import Backend, Context, create, reconcile, utc_now
from tests.integration.helpers import create_order, events, get_order, notify, reconcile_pass

NOT_EXIST = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}


def paid_answer(no, amount):
    return {"code": "10000", "msg": "Success", "out_trade_no": no, "trade_no": "2026P", "trade_status": "TRADE_SUCCESS",
            "total_amount": amount, "send_pay_date": "2026-12-01 10:00:00"}


def ctx_at(minutes=0.0, time_left=60.0):
    return Context(Backend(), clock=lambda: utc_now() + datetime.timedelta(minutes=minutes),
                   time_left=lambda: time_left)


def new_order(total="3.00", timeout="30m", minutes_ago=0.0, product="page"):
    body = {"product": product, "subject": "s", "total_amount": total, "timeout_express": timeout}
    return create.create_order(ctx_at(-minutes_ago), "a", body, None, None)[1]["out_trade_no"]


def sqs_event(client, *bodies):
    return client.events.generate_sqs_event(message_bodies=[json.dumps(body) for body in bodies],
                                            queue_name=settings.load().reconcile_queue)


def gateway_methods(alipay):
    return [method for method, _ in alipay.calls]


def test_a_pass_with_nothing_due_costs_one_query_per_shard(merchant, env, alipay):
    for _ in range(30):
        new_order()
    calls = []
    ctx = ctx_at()
    ctx.store._client.meta.events.register("before-call.dynamodb", lambda model, **kw: calls.append(model.name))
    summary = reconcile.run_pass(ctx)
    assert summary == {"shards": store.SHARDS, "due": 0, "queued": 0, "complete": True}
    assert calls == ["Query"] * store.SHARDS and alipay.calls == []


def test_a_waiting_order_paid_at_alipay_is_applied_once_whatever_the_redeliveries(client, merchant, env, alipay):
    no = new_order(minutes_ago=3)  # past the first step of the backoff (2 minutes)
    alipay.script("alipay.trade.query", paid_answer(no, "3.00"))
    summary, handled = reconcile_pass(min_age=None)
    assert summary["due"] == 1 and summary["queued"] == 1 and handled == 1
    assert get_order(client, merchant, no)[1]["status"] == "TRADE_SUCCESS"
    for _ in range(2):  # SQS delivers at least once: the same message again
        answer = client.lambda_.invoke("reconcile_worker", sqs_event(client, {"out_trade_no": no})).payload
        assert answer == {"batchItemFailures": []}
    assert gateway_methods(alipay) == ["alipay.trade.query"]  # paid meanwhile: nothing to ask
    assert [e["type"] for e in events(client, merchant, no)] == ["created", "transition"]
    assert reconcile_pass(min_age=None)[0]["due"] == 0  # off the index


def test_a_message_for_an_order_paid_meanwhile_asks_nothing_and_leaves_the_index(client, merchant, env, alipay):
    no = new_order(minutes_ago=3)
    assert reconcile.run_pass(ctx_at())["queued"] == 1
    notify(client, merchant.notification(no, "3.00"))  # the notification arrives before the worker runs
    assert sqsdrain.drain(settings.load().reconcile_queue, app.reconcile_worker) == 1
    assert alipay.calls == [] and reconcile.run_pass(ctx_at(minutes=60 * 24 * 30))["due"] == 0


def test_an_expired_order_is_closed_once(client, merchant, env, alipay):
    no = new_order(timeout="1m", minutes_ago=5)
    alipay.script("alipay.trade.query", NOT_EXIST)
    alipay.script("alipay.trade.close", NOT_EXIST)
    reconcile_pass(min_age=None)
    assert get_order(client, merchant, no)[1]["status"] == "TRADE_CLOSED"
    client.lambda_.invoke("reconcile_worker", sqs_event(client, {"out_trade_no": no}))  # redelivered
    assert gateway_methods(alipay) == ["alipay.trade.query", "alipay.trade.close"]
    assert [e.get("to") for e in events(client, merchant, no)] == [None, "TRADE_CLOSED"]


def test_a_waiting_order_not_paid_yet_moves_to_its_next_step(merchant, env, alipay, aws):
    no = new_order(minutes_ago=3)
    alipay.script("alipay.trade.query", NOT_EXIST)
    reconcile_pass(min_age=None)
    item = aws["dynamodb"].get_item(TableName=env["ORDERS_TABLE"], Key=store.order_key(no))["Item"]
    created = datetime.datetime.strptime(item["created_at"]["S"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    assert int(item["due_at"]["N"]) == int(created + 300)  # the next step: 5 minutes after creation
    assert reconcile.run_pass(ctx_at())["due"] == 0


def test_a_failing_order_does_not_stop_the_others(client, merchant, env, alipay, aws):
    broken, fine = new_order(minutes_ago=3), new_order(minutes_ago=3)
    aws["dynamodb"].update_item(TableName=env["ORDERS_TABLE"], Key=store.order_key(broken),
                                UpdateExpression="REMOVE created_at")  # a defect to meet, not a gateway error
    alipay.script("alipay.trade.query", lambda biz: paid_answer(biz["out_trade_no"], "3.00"))
    event = sqs_event(client, {"out_trade_no": broken}, {"out_trade_no": fine})
    answer = client.lambda_.invoke("reconcile_worker", event).payload
    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert get_order(client, merchant, fine)[1]["status"] == "TRADE_SUCCESS"


def test_a_pass_that_runs_out_of_time_stops_cleanly_and_the_next_one_resumes(merchant, env, alipay):
    due = {new_order(minutes_ago=3) for _ in range(40)}
    budget = iter([60.0] * 5 + [0.0] * 1000)  # time for five shard pages, then none
    first = reconcile.run_pass(Context(Backend(), time_left=lambda: next(budget)))
    second = reconcile.run_pass(ctx_at())
    assert not first["complete"] and first["shards"] < store.SHARDS and second["complete"]
    assert first["queued"] + second["queued"] == len(due)  # each due order queued once: leased
    queued = []
    sqsdrain.drain(settings.load().reconcile_queue, lambda event, context: queued.extend(
        json.loads(r["body"])["out_trade_no"] for r in event["Records"]))
    assert sorted(queued) == sorted(due)


def test_refund_calls_of_one_trade_are_spaced_by_a_claim_not_a_sleep(client, merchant, env, alipay):
    no = create_order(client, merchant, total_amount="10.00")["out_trade_no"]
    notify(client, merchant.notification(no, "10.00"))
    alipay.script("alipay.trade.refund", {"code": "10000", "msg": "Success", "fund_change": "Y", "refund_fee": "1.00"},
                  {"code": "10000", "msg": "Success", "fund_change": "Y", "refund_fee": "3.00"})
    headers = {**merchant.auth, "Content-Type": "application/json"}
    first = client.http.post(f"/orders/{no}/refunds", headers=headers,
                             body=json.dumps({"refund_amount": "1.00", "out_request_no": "S1"}))
    second = client.http.post(f"/orders/{no}/refunds", headers=headers,
                              body=json.dumps({"refund_amount": "2.00", "out_request_no": "S2"}))
    assert (first.status_code, second.status_code) == (201, 202)
    assert json.loads(second.body)["status"] == "REFUND_PENDING" and len(alipay.calls) == 1
    assert sqsdrain.drain(settings.load().reconcile_queue, app.reconcile_worker) >= 1  # after its delay
    view = get_order(client, merchant, no)[1]
    assert view["refunded_amount"] == "3.00" and [r["status"] for r in view["refunds"]] == ["REFUND_SUCCESS"] * 2
    assert gateway_methods(alipay) == ["alipay.trade.refund"] * 2


def test_the_poll_lane_chains_delayed_queries_until_paid_or_out_of_time(client, merchant, env, alipay):
    no = new_order()
    alipay.script("alipay.trade.query", NOT_EXIST, paid_answer(no, "3.00"))
    ctx = ctx_at()
    assert reconcile.poll(ctx, no, ctx.now_epoch() + 60) == "again"
    assert sqsdrain.pending(settings.load().poll_queue) == 1
    assert sqsdrain.drain(settings.load().poll_queue, app.poll_worker) == 1
    assert get_order(client, merchant, no)[1]["status"] == "TRADE_SUCCESS"
    assert reconcile.poll(ctx, no, ctx.now_epoch() + 60) == "TRADE_SUCCESS"  # paid: no query, no chain
    assert gateway_methods(alipay) == ["alipay.trade.query"] * 2
    other = new_order()
    alipay.script("alipay.trade.query", NOT_EXIST)
    assert reconcile.poll(ctx, other, ctx.now_epoch() + 1) == "WAIT_BUYER_PAY"  # out of time: the chain ends


def test_legacy_orders_never_enter_the_index(merchant, env, alipay, aws):
    no = new_order(product="legacy", minutes_ago=60)
    item = aws["dynamodb"].get_item(TableName=env["ORDERS_TABLE"], Key=store.order_key(no))["Item"]
    assert "due_at" not in item and reconcile.run_pass(ctx_at(minutes=60 * 24))["due"] == 0


def test_orders_of_the_old_layout_move_to_the_due_index_idempotently(merchant, env, aws):
    import subprocess
    import sys
    nos = [new_order() for _ in range(5)]
    for no in nos:  # as the previous layout wrote them
        aws["dynamodb"].update_item(TableName=env["ORDERS_TABLE"], Key=store.order_key(no),
                                    UpdateExpression="SET waiting = :w REMOVE due_shard, due_at",
                                    ExpressionAttributeValues={":w": {"S": "WAIT"}})
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for expected in (5, 0):
        done = subprocess.run([sys.executable, "manage.py", "migrate-due"], cwd=root, env=dict(os.environ),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and f"{expected} order(s) moved" in done.stdout, done.stderr
    assert reconcile.run_pass(ctx_at())["due"] == 5
