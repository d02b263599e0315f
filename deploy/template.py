"""The merge template for `chalice package --merge-template`, per stage.

What Chalice does not make: the orders table (its definition comes from chalicelib.store, the
one module that knows it), the merchant secret (created empty: its value never enters a
template), a public Function URL for `notify`, and the outputs a merchant needs. The reconciler's
schedule is not here: its Chalice decorator already makes it.

    python -m deploy.template prod > build/merge-prod.json
"""
import json
import sys

from chalicelib import store
from deploy import operations, policies


def table_name(stage):
    return f"alipay-orders-{stage}"


def secret_name(stage):
    return f"alipay/merchant-{stage}"


def merge_template(stage):
    table = store.table_definition(table_name(stage))
    workers = worker_resources(stage)
    template = {
        "Parameters": operations.parameters(),
        "Conditions": operations.conditions(),
        "Resources": {
            "OrdersTable": {
                "Type": "AWS::DynamoDB::Table",
                "DeletionPolicy": "Retain",  # orders are records of money: never deleted with the stack
                "UpdateReplacePolicy": "Retain",
                "Properties": dict(
                    table,
                    PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
                    SSESpecification={"SSEEnabled": True},
                    TimeToLiveSpecification={"AttributeName": store.TTL_ATTRIBUTE, "Enabled": True},
                ),
            },
            "MerchantSecret": {
                "Type": "AWS::SecretsManager::Secret",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {
                    "Name": secret_name(stage),
                    "Description": "chalice-alipay merchant keys: written by `python manage.py put-secret`",
                },
            },
            # SAM makes the URL and the permissions to call it (lambda:InvokeFunctionUrl and, as AWS
            # requires of new URLs since October 2025, lambda:InvokeFunction).
            "Notify": {"Properties": {"FunctionUrlConfig": {"AuthType": "NONE"}}},
            **workers,
            **operations.resources(stage, [name for name in workers if name.endswith("DeadLetters")]
                                   + ["EventsDeadLetterQueue"]),
        },
        "Outputs": {
            "NotifyFunctionUrl": {"Description": "give this to Alipay as notify_url (NOTIFY_URL)",
                                  "Value": {"Fn::GetAtt": ["NotifyUrl", "FunctionUrl"]}},
            "OrdersTableName": {"Value": {"Ref": "OrdersTable"}},
            "MerchantSecretArn": {"Value": {"Ref": "MerchantSecret"}},
        },
    }
    add_order_events(template, stage)
    return template


# ---- order events (contract, "Order events") ---------------------------------------------------

def event_bus_name(stage):
    return f"chalice-alipay-{stage}"


def events_dead_letter_queue_name(stage):
    return f"chalice-alipay-{stage}-events-dlq"


# Chalice names the publisher's resources after `@app.on_dynamodb_record(name="publish_events")`.
PUBLISHER = "PublishEvents"
PUBLISHER_EVENT_SOURCE = "PublishEventsDynamodbEventSource"


def add_order_events(template, stage):
    """The table's stream, the bus, the dead-letter queue, and what Chalice cannot set on the
    publisher's event source mapping: its stream (the stand-in ARN of app.py replaced by the
    table's), partial batch failures, bisect on error, bounded retries, the on-failure destination."""
    resources, outputs = template["Resources"], template["Outputs"]
    # CloudFormation's StreamSpecification has no StreamEnabled: a view type is the stream.
    resources["OrdersTable"]["Properties"]["StreamSpecification"] = {"StreamViewType": store.STREAM_VIEW_TYPE}
    resources["EventBus"] = {"Type": "AWS::Events::EventBus", "Properties": {"Name": event_bus_name(stage)}}
    resources["EventsDeadLetterQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {"QueueName": events_dead_letter_queue_name(stage), "SqsManagedSseEnabled": True,
                       "MessageRetentionPeriod": 1209600},  # 14 days, SQS's longest
    }
    resources[PUBLISHER] = {"Properties": {"Events": {PUBLISHER_EVENT_SOURCE: {"Properties": {
        "Stream": {"Fn::GetAtt": ["OrdersTable", "StreamArn"]},
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "BisectBatchOnFunctionError": True,
        # Every retry starts at the first record not published; after these the batch's shard and
        # sequence range go to the dead-letter queue (the records stay in the stream for 24 h).
        "MaximumRetryAttempts": 10,
        "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}}},
    }}}}}
    outputs["EventBusName"] = {"Description": "order events go here: add your rules to this bus (EVENT_BUS_NAME)",
                               "Value": {"Ref": "EventBus"}}
    outputs["EventBusArn"] = {"Value": {"Fn::GetAtt": ["EventBus", "Arn"]}}
    outputs["OrdersStreamArn"] = {"Value": {"Fn::GetAtt": ["OrdersTable", "StreamArn"]}}
    outputs["EventsDeadLetterQueueUrl"] = {"Description": "batches the publisher gave up on (shard and sequence range)",
                                           "Value": {"Ref": "EventsDeadLetterQueue"}}


# queue kind -> (function, its timeout in seconds, receives before the dead-letter queue)
WORKERS = {"reconcile": ("ReconcileWorker", 60, 5), "poll": ("PollWorker", 20, 3)}


def worker_resources(stage):
    """Each worker's queue and dead-letter queue, and what Chalice cannot set on its event source
    mapping: partial batch failures reported (ReportBatchItemFailures) and the concurrency bounded
    by the event source (MaximumConcurrency; reserved concurrency would throttle deliveries into
    the dead-letter queue), so that Alipay's per-app rate limits hold."""
    resources = {}
    for kind, (function, timeout, receives) in WORKERS.items():
        queue, dead = f"{kind.capitalize()}Queue", f"{kind.capitalize()}DeadLetters"
        resources[dead] = {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": f"{policies.queue_name(kind, stage)}-dead", "MessageRetentionPeriod": 14 * 86400}}
        resources[queue] = {"Type": "AWS::SQS::Queue", "Properties": {
            "QueueName": policies.queue_name(kind, stage),
            "VisibilityTimeout": 6 * timeout,  # at least the worker's timeout; AWS advises six times
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dead, "Arn"]}, "maxReceiveCount": receives}}}
        # Chalice names the queue's ARN from its name; the function waits for the queue to exist.
        mapping = {"FunctionResponseTypes": ["ReportBatchItemFailures"],
                   "ScalingConfig": {"MaximumConcurrency": WORKER_CONCURRENCY}}
        resources[function] = {"DependsOn": [queue],
                               "Properties": {"Events": {f"{function}SqsEventSource": {"Properties": mapping}}}}
    return resources


# Workers at once per queue: each reconcile worker makes a few gateway calls a second, so five
# stay far below Alipay's per-app rate limits. A setting of the template (edit and package again).
WORKER_CONCURRENCY = 5


if __name__ == "__main__":
    json.dump(merge_template(sys.argv[1]), sys.stdout, indent=2)
    print()
