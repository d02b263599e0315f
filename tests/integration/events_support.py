"""Order events in tests: the stream function as Lambda runs it, and a bus whose rule delivers to
an SQS queue, all on the moto server (which triggers nothing by itself: traps.md)."""
import datetime
import json
import pathlib

import boto3
import jsonschema

import streamreader
from chalicelib import store
from chalicelib.service import publish

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "order-event.schema.json").read_text())
DETAIL_TYPES = ("order.created", "order.paid", "order.finished", "order.closed", "order.refund.succeeded",
                "order.refund.failed", "order.refund.pending", "order.anomaly")


def lambda_records(records, stream_arn):
    """Records as Lambda delivers them: with eventSourceARN, times in epoch seconds, plain JSON."""
    def shaped(record):
        data = dict(record["dynamodb"])
        moment = data.get("ApproximateCreationDateTime")
        if isinstance(moment, datetime.datetime):
            data["ApproximateCreationDateTime"] = int(moment.timestamp())
        return dict(record, eventSourceARN=stream_arn, dynamodb=data)
    return json.loads(json.dumps({"Records": [shaped(r) for r in records]}))


class StreamFunction:
    """Reads the table's stream from its oldest record and invokes the app's `publish_events`
    handler with each batch, as the event source mapping would; keeps what each call answered."""

    def __init__(self, client, table, batch_size=100):
        arn = store.latest_stream_arn(boto3.client("dynamodb"), table)
        self.client, self.arn = client, arn
        self.reader = streamreader.StreamReader(boto3.client("dynamodbstreams"), arn, batch_size=batch_size)
        self.calls = []  # (records as delivered, the handler's answer)

    def handle(self, records):
        event = lambda_records(records, self.arn)
        answer = self.client.lambda_.invoke("publish_events", event).payload
        self.calls.append((event["Records"], answer))
        return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]

    def run(self):
        """Everything not read yet; (records, failed records)."""
        return self.reader.read_once(self.handle)

    def redeliver(self, index):
        """The `index`th batch delivered again, exactly as it was (Lambda retries a batch so)."""
        return self.client.lambda_.invoke("publish_events", {"Records": self.calls[index][0]}).payload


class Bus:
    """A bus with one rule, `source: chalice-alipay` -> an SQS queue."""

    def __init__(self, name):
        self.name = name
        self.events, self.sqs = boto3.client("events"), boto3.client("sqs")
        publish.ensure_bus(self.events, name)
        self.queue_url = self.sqs.create_queue(QueueName=f"{name}-queue")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url,
                                                  AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.events.put_rule(Name="orders", EventBusName=name,
                             EventPattern=json.dumps({"source": [publish.SOURCE]}))
        self.events.put_targets(Rule="orders", EventBusName=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
        self.seen = []

    def received(self):
        """What reached the queue since the last call, in order, each Detail checked against the schema."""
        got = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                break
            for message in messages:
                envelope = json.loads(message["Body"])
                assert envelope["source"] == publish.SOURCE and envelope["detail-type"] in DETAIL_TYPES
                jsonschema.validate(envelope["detail"], SCHEMA)
                got.append(envelope)
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        self.seen.extend(got)
        return got


def story(envelopes, out_trade_no=None):
    """(detail-type, status, refunded_amount) of each event, of one order when named."""
    return [(e["detail-type"], e["detail"]["status"], e["detail"]["refunded_amount"]) for e in envelopes
            if out_trade_no in (None, e["detail"]["out_trade_no"])]
