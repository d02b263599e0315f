"""Events section: the cost of publishing one order event, against a moto server.

A stream batch is read once (untimed) and handed to the publisher again and again. What is
measured is our own time outside botocore (the AWS client's time, wire and moto included, is
taken out by timing every client call) and the AWS calls per event. The floor, measured in the
same run and interleaved: the least any publisher must do per record, deserializing the stream
image and serializing a Detail as JSON, and ceil(events / 10) PutEvents calls.
"""
import contextlib
import gc
import json
import math
import os
import time

from boto3.dynamodb.types import TypeDeserializer

from bench.timing import MotoProcess, summary
from localaws import aws_environment
from tests.support import Merchant

TABLE, SECRET, BUS = "bench-events", "bench/events-merchant", "bench-bus"


class CountedClient:
    """A boto3 client whose calls are counted and timed (their time is botocore's, not ours)."""

    def __init__(self, client):
        self._client, self.calls, self.inside_ns = client, {}, 0

    def __getattr__(self, name):
        attribute = getattr(self._client, name)
        if not callable(attribute) or name.startswith("_") or name in ("meta", "exceptions"):
            return attribute

        def call(*args, **kwargs):
            start = time.perf_counter_ns()
            try:
                return attribute(*args, **kwargs)
            finally:
                self.inside_ns += time.perf_counter_ns() - start
                self.calls[name] = self.calls.get(name, 0) + 1
        return call


def run(rounds=20):
    print("== events (publishing order events from a stream batch; moto server; own time outside botocore)")
    moto = MotoProcess().start()
    os.environ.update(aws_environment(moto.url))
    os.environ.update({"ORDERS_TABLE": TABLE, "ALIPAY_SECRET_ID": SECRET, "EVENT_BUS_NAME": BUS})
    import boto3
    from chalice.test import Client

    import app as application
    import streamreader
    from chalicelib import store
    from chalicelib.service import Backend, Context, publish
    ddb = boto3.client("dynamodb")
    store.ensure_table(ddb, TABLE)
    publish.ensure_bus(boto3.client("events"), BUS)
    merchant = Merchant()
    merchant.put(boto3.client("secretsmanager"), SECRET)
    with Client(application.app, stage_name="local", project_dir=os.path.dirname(os.path.dirname(__file__))) as client, \
            open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # their metrics lines
        for n in range(33):  # created + paid: 99 records, 66 events, one Lambda batch
            body = {"product": "page", "subject": "bench", "total_amount": "88.80", "out_trade_no": f"E{n}"}
            assert client.http.post("/orders", body=json.dumps(body), headers={
                **merchant.auth, "Content-Type": "application/json", "Host": "pay.example"}).status_code == 201
            assert client.http.post("/alipay/notify", body=merchant.notification(f"E{n}", "88.80"), headers={
                "Content-Type": "application/x-www-form-urlencoded"}).status_code == 200
    records = []
    reader = streamreader.StreamReader(boto3.client("dynamodbstreams"), store.latest_stream_arn(ddb, TABLE))
    reader.read_once(lambda batch: records.extend(batch) or [])
    paid_only = [r for r in records if r["eventName"] == "INSERT" and r["dynamodb"]["Keys"]["sk"]["S"] != "ORDER"]

    backend = Backend()
    backend._clients = {name: CountedClient(backend.client(name)) for name in ("dynamodb", "events")}
    counted = backend._clients.values()
    deserializer = TypeDeserializer()

    def floor(batch):
        for record in batch:
            image = {k: deserializer.deserialize(v) for k, v in record["dynamodb"]["NewImage"].items()}
            json.dumps({"version": 1, "id": record["dynamodb"]["SequenceNumber"], **{
                k: str(v) for k, v in image.items() if not isinstance(v, dict)}}, separators=(",", ":"))

    for label, batch in (("a batch of creations and payments", records), ("a batch of payments only", paid_only)):
        events = sum(1 for r in batch if store.stream_change(r) is not None)
        times, calls = {"ours": [], "floor": []}, {}
        publish.publish(Context(backend), batch)  # warm
        gc.disable()
        try:
            for _ in range(rounds):
                for client in counted:
                    client.calls, client.inside_ns = {}, 0
                start = time.perf_counter_ns()
                outcome = publish.publish(Context(backend), batch)
                total = time.perf_counter_ns() - start
                assert outcome.events == events and not outcome.failed
                times["ours"].append((total - sum(c.inside_ns for c in counted)) / 1000 / events)
                calls = {name: n for c in counted for name, n in c.calls.items()}
                start = time.perf_counter_ns()
                floor(batch)
                times["floor"].append((time.perf_counter_ns() - start) / 1000 / events)
                gc.collect()
        finally:
            gc.enable()
        summary(f"per event, {label} ({len(batch)} records, {events} events)", times)
        print(f"{'':<44} AWS calls per batch: {calls} = {sum(calls.values()) / events:.3f} per event "
              f"| floor {math.ceil(events / 10)} PutEvents = {math.ceil(events / 10) / events:.3f} per event")
    moto.stop()
