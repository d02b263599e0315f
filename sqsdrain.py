"""Lambda's SQS event source, by hand, for places where nothing triggers the workers (a moto
server): `manage.py reconcile` and `make run`. Never deployed.

Messages are received ten at a time and handed to the app's own handler as Lambda hands them
(an SQS event), and deleted unless the handler reports them in `batchItemFailures`
(ReportBatchItemFailures): those come back after the visibility timeout, as in AWS.
"""
import time

import boto3


class _Context:
    """What the handlers read of Lambda's context: the time left, and a request id."""

    def __init__(self, seconds):
        self._deadline = time.monotonic() + seconds
        self.aws_request_id = "local-drain"

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def drain_once(queue_name, handler, timeout_seconds=60, wait_seconds=0, visibility_seconds=30):
    """One receive (up to ten messages) through `handler`; how many were handled."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds,
                                   VisibilityTimeout=visibility_seconds).get("Messages", [])
    if not messages:
        return 0
    event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                          "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs",
                          "eventSourceARN": f"arn:aws:sqs:local:000000000000:{queue_name}"} for m in messages]}
    answer = handler(event, _Context(timeout_seconds)) or {}
    failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
    done = [m for m in messages if m["MessageId"] not in failed]
    if done:
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(done)])
    return len(messages)


def pending(queue_name):
    """Messages still in the queue: visible, in flight or delayed."""
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


def drain(queue_name, handler, limit_seconds=120):
    """Until the queue is empty (delayed messages included) or `limit_seconds` pass; how many
    messages were handled."""
    handled, deadline = 0, time.monotonic() + limit_seconds
    while time.monotonic() < deadline:
        got = drain_once(queue_name, handler, visibility_seconds=5)
        handled += got
        if not got:
            if not pending(queue_name):
                return handled
            time.sleep(0.5)
    return handled


def ensure_queues(*names):
    """The queues the workers read (created if missing: `make run` and tests start empty)."""
    sqs = boto3.client("sqs")
    for name in names:
        sqs.create_queue(QueueName=name)


def follow(pass_every=300.0):
    """`make run`: the workers of both queues, and the scheduled pass every `pass_every` seconds,
    as Lambda runs them. Runs until stopped."""
    import app
    from chalicelib import settings
    from chalicelib.service import Backend, Context, reconcile
    config = settings.load()
    ensure_queues(config.reconcile_queue, config.poll_queue)
    next_pass = time.monotonic() + pass_every
    while True:
        handled = drain_once(config.reconcile_queue, app.reconcile_worker, wait_seconds=1)
        handled += drain_once(config.poll_queue, app.poll_worker)
        if time.monotonic() >= next_pass:
            reconcile.run_pass(Context(Backend(), time_left=lambda: 60.0))
            next_pass = time.monotonic() + pass_every
        if not handled:
            time.sleep(0.2)


if __name__ == "__main__":
    follow()
