"""The hand-written least-privilege policies of `.chalice/`, one per function kind and stage,
written from this one definition (`python -m deploy.policies`; a test checks the files match).

`chalice deploy` takes static policy files and no intrinsics, so resources are named by the
stage's naming convention with `*` for region and account; the KMS key, whose ARN is known only
after it exists, by its alias (a `kms:ResourceAliases` condition).

| file | functions | beyond the table, the secret and logs |
|---|---|---|
| policy-STAGE.json | notify | nothing: it never calls Alipay, so it never signs |
| policy-api-STAGE.json | api_handler | kms:Sign; send to the reconcile queue (refund calls deferred by the 3 s spacing) |
| policy-pass-STAGE.json | reconcile (the scheduled pass) | send to the reconcile queue |
| policy-worker-STAGE.json | reconcile_worker | kms:Sign; read, delete and send on the reconcile queue |
| policy-poll-STAGE.json | poll_worker | kms:Sign; read, delete and send on the poll queue |
| policy-events-STAGE.json | publish_events | read the table's stream, BatchGetItem, PutEvents on the stage's bus, send to its dead-letter queue; no secret |
"""
import json
import pathlib
import sys

from chalicelib import store
from deploy import resources

ROOT = pathlib.Path(__file__).resolve().parents[1]
STAGES = ("dev", "prod")
CONSUME = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
SEND = ["sqs:SendMessage", "sqs:GetQueueUrl"]
KINDS = {  # kind -> (signs, {queue: actions})
    "": (False, {}),
    "api": (True, {"reconcile": SEND}),
    "pass": (False, {"reconcile": SEND}),
    "worker": (True, {"reconcile": CONSUME + SEND}),
    "poll": (True, {"poll": CONSUME + SEND}),
    "events": (False, {}),
}
FUNCTIONS = {"api_handler": "api", "reconcile": "pass", "reconcile_worker": "worker", "poll_worker": "poll",
             "publish_events": "events"}


def file_name(kind, stage):
    return f"policy-{kind}-{stage}.json" if kind else f"policy-{stage}.json"


def policy(kind, stage):
    table = f"arn:aws:dynamodb:*:*:table/{resources.table_name(stage)}"
    functions = f"arn:aws:logs:*:*:log-group:/aws/lambda/{resources.function_name(stage, '*')}"
    logs = {"Sid": "Logs", "Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [functions, f"{functions}:*"]}
    if kind == "events":
        return {"Version": "2012-10-17", "Statement": _publisher(stage, table) + [logs]}
    statements = [
        {"Sid": "Orders", "Effect": "Allow",
         "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"],
         "Resource": [table, f"{table}/index/{store.DUE_INDEX}"]},
        {"Sid": "MerchantSecret", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"],
         "Resource": [f"arn:aws:secretsmanager:*:*:secret:{resources.secret_name(stage)}-??????"]},
        logs,
    ]
    signs, queues = KINDS[kind]
    for queue, actions in queues.items():
        statements.append({"Sid": f"{queue.capitalize()}Queue", "Effect": "Allow", "Action": actions,
                           "Resource": [f"arn:aws:sqs:*:*:{resources.queue_name(queue, stage)}"]})
    if signs:
        statements.append({
            "Sid": "AppKeySign", "Effect": "Allow", "Action": ["kms:Sign"], "Resource": ["arn:aws:kms:*:*:key/*"],
            "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": resources.key_alias(stage)},
                          "StringEquals": {"kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256"}}})
    return {"Version": "2012-10-17", "Statement": statements}


def _publisher(stage, table):
    """The events publisher reads the table's stream (and the orders' product and total), puts
    events on the stage's bus and sends what it cannot publish to its dead-letter queue."""
    return [
        {"Sid": "OrderEventsStream", "Effect": "Allow", "Action": ["dynamodb:DescribeStream", "dynamodb:GetRecords",
                                                                     "dynamodb:GetShardIterator", "dynamodb:ListStreams"],
         "Resource": [f"{table}/stream/*"]},
        {"Sid": "OrderEventsOrders", "Effect": "Allow", "Action": ["dynamodb:BatchGetItem"], "Resource": [table]},
        {"Sid": "OrderEventsBus", "Effect": "Allow", "Action": ["events:PutEvents"],
         "Resource": [f"arn:aws:events:*:*:event-bus/{resources.event_bus_name(stage)}"]},
        {"Sid": "OrderEventsDeadLetter", "Effect": "Allow", "Action": ["sqs:SendMessage"],
         "Resource": [f"arn:aws:sqs:*:*:{resources.events_dead_letter(stage).name}"]},
    ]


def files():
    return {file_name(kind, stage): policy(kind, stage) for stage in STAGES for kind in KINDS}


def text(document):
    return json.dumps(document, indent=2) + "\n"


if __name__ == "__main__":
    for name, document in files().items():
        (ROOT / ".chalice" / name).write_text(text(document))
    print(f"wrote {len(files())} policy files", file=sys.stderr)
