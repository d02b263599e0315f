"""What a stage needs besides Chalice's own resources, defined once for both deploy paths:
`deploy/template.py` writes it as CloudFormation (`make package`), `deploy/prepare.py` and
`deploy/finish.py` make it through the AWS APIs around `chalice deploy`.

To add something both paths need (the table's stream, a bus, another queue), add it here; the
template and the prepare step each render it in one place.
"""
from dataclasses import dataclass, field
from typing import Optional

from chalicelib import store

APP_NAME = "chalice-alipay"
DAY = 86400


@dataclass(frozen=True)
class Table:
    name: str
    definition: dict  # keys, index, billing: the same words in CloudFormation and CreateTable
    # TTL is always on store.TTL_ATTRIBUTE (purge_at): store.ensure_table refuses any other
    point_in_time_recovery: bool = True
    kms_encrypted: bool = True  # SSE with the AWS managed KMS key (CloudFormation's SSEEnabled)
    stream_view_type: Optional[str] = None  # e.g. NEW_AND_OLD_IMAGES for a stream consumer


@dataclass(frozen=True)
class Queue:
    name: str
    logical_id: str  # its resource in the merge template
    visibility_timeout: Optional[int] = None
    retention_seconds: Optional[int] = None
    dead_letter: Optional["Queue"] = None
    max_receives: Optional[int] = None  # receives before a message moves to dead_letter


@dataclass(frozen=True)
class Worker:
    """A Chalice `on_sqs_message` function, its queue, and the event source mapping's settings
    Chalice cannot set (names as in both UpdateEventSourceMapping and SAM's SQS event)."""
    function: str  # Chalice's name: the Lambda function is APP_NAME-STAGE-function
    logical_id: str  # the function's resource in `chalice package`'s template
    queue: Queue
    mapping: dict = field(default_factory=dict)


def table_name(stage):
    return f"alipay-orders-{stage}"


def secret_name(stage):
    return f"alipay/merchant-{stage}"


def key_alias(stage):
    """The app key in KMS, when it is there (manage.py kms-keygen): the stage's policies name it."""
    return f"alias/{APP_NAME}-{stage}"


def queue_name(kind, stage):
    return f"{APP_NAME}-{kind}-{stage}"


SECRET_DESCRIPTION = "chalice-alipay merchant keys: written by `python manage.py put-secret`"


def function_name(stage, function):
    """The Lambda function `chalice deploy` makes for a Chalice function name."""
    return f"{APP_NAME}-{stage}-{function}"


def table(stage):
    # The stream feeds the order events publisher (contract, "Order events").
    return Table(name=table_name(stage), definition=store.table_definition(table_name(stage)),
                 stream_view_type=store.STREAM_VIEW_TYPE)


# Workers at once per queue: each reconcile worker makes a few gateway calls a second, so five
# stay far below Alipay's per-app rate limits. Reserved concurrency would throttle deliveries into
# the dead-letter queue instead; MaximumConcurrency holds them in the queue.
WORKER_CONCURRENCY = 5
# kind -> (Chalice function, template resource, its timeout in seconds, receives before the
# dead-letter queue). The timeouts are the stage's lambda_timeout of each function.
_WORKERS = {"reconcile": ("reconcile_worker", "ReconcileWorker", 60, 5),
            "poll": ("poll_worker", "PollWorker", 20, 3)}


def workers(stage):
    found = []
    for kind, (function, logical_id, timeout, receives) in _WORKERS.items():
        name = queue_name(kind, stage)
        dead = Queue(f"{name}-dead", f"{kind.capitalize()}DeadLetters", retention_seconds=14 * DAY)
        queue = Queue(name, f"{kind.capitalize()}Queue", visibility_timeout=6 * timeout,  # at least the worker's timeout; AWS advises six times
                      dead_letter=dead, max_receives=receives)
        found.append(Worker(function, logical_id, queue, {
            "FunctionResponseTypes": ["ReportBatchItemFailures"],  # else a failed message is deleted with its batch
            "ScalingConfig": {"MaximumConcurrency": WORKER_CONCURRENCY}}))
    return found


def queues(stage):
    """Every queue of the stage, dead-letter queues first (a redrive policy names an existing queue)."""
    ordered = []
    for worker in workers(stage):
        ordered += [worker.queue.dead_letter, worker.queue]
    return ordered


def environment(stage):
    """The names the stage's functions read, as `.chalice/config.json` must carry them."""
    return {"ORDERS_TABLE": table_name(stage), "ALIPAY_SECRET_ID": secret_name(stage),
            "RECONCILE_QUEUE": queue_name("reconcile", stage),
            "POLL_QUEUE": queue_name("poll", stage), "EVENT_BUS_NAME": event_bus_name(stage)}


# ---- order events: the bus, the publisher's dead-letter queue and its stream mapping ----------

PUBLISHER_FUNCTION = "publish_events"


def event_bus_name(stage):
    return f"{APP_NAME}-{stage}"


def events_dead_letter(stage):
    return Queue(f"{APP_NAME}-{stage}-events-dlq", "EventsDeadLetterQueue", retention_seconds=14 * DAY)


def publisher_mapping(dead_letter_arn):
    """What Chalice cannot set on the publisher's stream mapping: failed records reported, the
    batch bisected, retries bounded (each starts at the first record not published), then the
    batch's shard and sequence range to the dead-letter queue (the stream keeps records 24 h)."""
    return {"FunctionResponseTypes": ["ReportBatchItemFailures"], "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": 10, "DestinationConfig": {"OnFailure": {"Destination": dead_letter_arn}}}
