"""Scale section: what one reconcile pass costs, counted, and how the index spreads (README,
"Capacity"). Counts, not timings, for the pass: moto's speed is not DynamoDB's. The worker's
throughput is measured against the local sandbox, one process, in orders per second.
"""
import datetime
import os
import subprocess
import sys
import time
from collections import Counter

import botocore.client

from bench.timing import bench_table
from devstack import free_port, http_json, wait_until_up
from localaws import MotoServer, aws_environment
from tests.support import Merchant

NS = (1_000, 10_000)
DUE_SHARE = 0.01


class Calls:
    """AWS calls by service and operation, made inside the block."""

    def __init__(self):
        self.counts = Counter()
        self._original = botocore.client.BaseClient._make_api_call

    def __enter__(self):
        meter, original = self, self._original

        def counted(client, operation, params):
            meter.counts[f"{client.meta.service_model.service_name}:{operation}"] += 1
            return original(client, operation, params)
        botocore.client.BaseClient._make_api_call = counted
        return self

    def __exit__(self, *exc):
        botocore.client.BaseClient._make_api_call = self._original


def fill(ddb, table, n, due):
    """n waiting orders on the index, `due` of them due now (batch writes: setup, not measured)."""
    from chalicelib import store
    now = int(time.time())
    items = []
    for i in range(n):
        no = f"S{n}_{i:06d}"
        at = now - 60 if i < due else now + 3600
        items.append({"PutRequest": {"Item": {
            "pk": {"S": f"ORDER#{no}"}, "sk": {"S": "ORDER"}, "out_trade_no": {"S": no},
            "status": {"S": "WAIT_BUYER_PAY"}, "product": {"S": "page"}, "total_amount": {"N": "1"},
            "created_at": {"S": "2026-12-01T00:00:00.000Z"}, "updated_at": {"S": "2026-12-01T00:00:00.000Z"},
            "version": {"N": "0"}, "due_shard": {"S": store.due_shard(no)}, "due_at": {"N": str(at)}}}})
    for first in range(0, n, 25):
        ddb.batch_write_item(RequestItems={table: items[first:first + 25]})


def shard_sizes(ddb, table):
    from chalicelib import store
    sizes = []
    for shard in range(store.SHARDS):
        sizes.append(ddb.query(TableName=table, IndexName=store.DUE_INDEX, Select="COUNT",
                               KeyConditionExpression="due_shard = :s",
                               ExpressionAttributeValues={":s": {"S": f"{shard:02d}"}})["Count"])
    return sizes


def pass_costs(ddb, sqs):
    from chalicelib import store
    from chalicelib.service import Backend, Context, reconcile
    print(f"{'waiting N':>10} {'due':>5} | {'DynamoDB calls':>15} {'of which Query':>15} {'SQS batches':>12} "
          f"| {'largest shard':>13} {'N/K':>6}")
    for n in NS:
        for due in (0, int(n * DUE_SHARE)):
            table = f"bench-scale-{n}-{due}"
            os.environ["ORDERS_TABLE"] = table
            bench_table(ddb, table)
            fill(ddb, table, n, due)
            os.environ["RECONCILE_QUEUE"] = table
            sqs.create_queue(QueueName=table)
            with Calls() as calls:
                summary = reconcile.run_pass(Context(Backend(), time_left=lambda: 600.0))
            assert summary["queued"] == due and summary["complete"], summary
            dynamo = sum(v for k, v in calls.counts.items() if k.startswith("dynamodb:"))
            sizes = shard_sizes(ddb, table)
            print(f"{n:>10} {due:>5} | {dynamo:>15} {calls.counts['dynamodb:Query']:>15} "
                  f"{calls.counts['sqs:SendMessageBatch']:>12} | {max(sizes):>13} {n / store.SHARDS:>6.0f}")
            ddb.delete_table(TableName=table)


def worker_throughput(ddb, sm, orders=200):
    """Due orders worked by one in-process worker against the local sandbox (each: a query, then
    the next step of its backoff); gateway calls counted at the HTTP layer."""
    from chalicelib.alipay import keys
    from chalicelib.alipay.client import GatewayClient
    from chalicelib.service import Backend, Context, create, reconcile
    port = free_port()
    sandbox = subprocess.Popen([sys.executable, "-m", "sandbox", "serve", "--port", str(port), "--state", ""],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base + "/sandbox/alipay_public_key", sandbox)
        alipay_key = http_json(base + "/sandbox/alipay_public_key")
        merchant = Merchant(app_id="2021000122600001")
        merchant.secret["alipay_public_key"] = alipay_key
        merchant.put(sm, os.environ["ALIPAY_SECRET_ID"])
        http_json(base + "/sandbox/apps", {"app_id": merchant.app_id, "public_key": keys.spki_base64(merchant.app_key),
                                           "seller_id": merchant.seller_id})
        os.environ.update(ORDERS_TABLE="bench-worker", ALIPAY_GATEWAY=base + "/gateway.do")
        bench_table(ddb, "bench-worker")
        earlier = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=3)
        maker = Context(Backend(), clock=lambda: earlier)
        nos = [create.create_order(maker, "bench", {"product": "page", "subject": "s", "total_amount": "1.00"},
                                   None, None)[1]["out_trade_no"] for _ in range(orders)]
        posts = Counter()
        original = GatewayClient._post

        def counted(client, method, *args, **kwargs):
            posts[method] += 1
            return original(client, method, *args, **kwargs)
        GatewayClient._post = counted
        ctx = Context(Backend(), time_left=lambda: 600.0)
        ctx.merchant()  # warm, as a warm worker is
        start = time.perf_counter()
        summary, retry = reconcile.work(ctx, [(no, {"out_trade_no": no}) for no in nos])
        seconds = time.perf_counter() - start
        GatewayClient._post = original
        assert summary["queried"] == orders and not retry, summary
        print(f"worker: {orders} due orders in {seconds:.1f} s = {orders / seconds:.0f} orders/s in one process; "
              f"gateway calls per due order: {sum(posts.values()) / orders:.2f} ({dict(posts)})")
    finally:
        sandbox.terminate()
        sandbox.wait()


def run():
    print("== scale (reconcile pass: calls counted over a moto server; K = 16 shards)")
    moto = MotoServer().start()
    os.environ.update(aws_environment(moto.url))
    os.environ.update({"ALIPAY_SECRET_ID": "bench/scale-merchant"})
    import boto3
    ddb, sqs, sm = boto3.client("dynamodb"), boto3.client("sqs"), boto3.client("secretsmanager")
    try:
        pass_costs(ddb, sqs)
        worker_throughput(ddb, sm)
    finally:
        moto.stop()
