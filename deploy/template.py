"""The merge template for `chalice package --merge-template`, per stage.

What Chalice does not make: the orders table (its definition comes from chalicelib.store, the
one module that knows it), the merchant secret (created empty: its value never enters a
template), a public Function URL for `notify`, the workers' queues and their event source
settings, and the outputs a merchant needs. The reconciler's schedule is not here: its Chalice
decorator already makes it. Table, queues and worker settings are defined in deploy/resources.py,
which the `chalice deploy` path (deploy/prepare.py, deploy/finish.py) makes from too.

    python -m deploy.template prod > build/merge-prod.json
"""
import json
import sys

from chalicelib import store
from deploy import operations, resources


def merge_template(stage):
    workers = worker_resources(stage)
    template = {
        "Parameters": operations.parameters(),
        "Conditions": operations.conditions(),
        "Resources": {
            "OrdersTable": {
                "Type": "AWS::DynamoDB::Table",
                "DeletionPolicy": "Retain",  # orders are records of money: never deleted with the stack
                "UpdateReplacePolicy": "Retain",
                "Properties": table_properties(resources.table(stage)),
            },
            "MerchantSecret": {
                "Type": "AWS::SecretsManager::Secret",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Properties": {
                    "Name": resources.secret_name(stage),
                    "Description": resources.SECRET_DESCRIPTION,
                },
            },
            # SAM makes the URL and the permissions to call it (lambda:InvokeFunctionUrl and, as AWS
            # requires of new URLs since October 2025, lambda:InvokeFunction).
            "Notify": {"Properties": {"FunctionUrlConfig": {"AuthType": "NONE"}}},
            **workers,
            **operations.resources(stage, [queue.logical_id for queue in dead_letter_queues(stage)]),
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

# Chalice names the publisher's resources after `@app.on_dynamodb_record(name="publish_events")`.
PUBLISHER = "PublishEvents"
PUBLISHER_EVENT_SOURCE = "PublishEventsDynamodbEventSource"


def add_order_events(template, stage):
    """The table's stream, the bus, the dead-letter queue, and what Chalice cannot set on the
    publisher's event source mapping: its stream (the stand-in ARN of app.py replaced by the
    table's), partial batch failures, bisect on error, bounded retries, the on-failure destination."""
    added, outputs = template["Resources"], template["Outputs"]
    dead_letter = resources.events_dead_letter(stage)
    added["EventBus"] = {"Type": "AWS::Events::EventBus", "Properties": {"Name": resources.event_bus_name(stage)}}
    added[dead_letter.logical_id] = _queue(dead_letter)
    added[PUBLISHER] = {"Properties": {"Events": {PUBLISHER_EVENT_SOURCE: {"Properties": {
        "Stream": {"Fn::GetAtt": ["OrdersTable", "StreamArn"]},
        **resources.publisher_mapping({"Fn::GetAtt": [dead_letter.logical_id, "Arn"]}),
    }}}}}
    outputs["EventBusName"] = {"Description": "order events go here: add your rules to this bus (EVENT_BUS_NAME)",
                               "Value": {"Ref": "EventBus"}}
    outputs["EventBusArn"] = {"Value": {"Fn::GetAtt": ["EventBus", "Arn"]}}
    outputs["OrdersStreamArn"] = {"Value": {"Fn::GetAtt": ["OrdersTable", "StreamArn"]}}
    outputs[f"{dead_letter.logical_id}Url"] = {"Description": "batches the publisher gave up on (shard and sequence range)",
                                               "Value": {"Ref": dead_letter.logical_id}}


def dead_letter_queues(stage):
    """Every dead-letter queue of the stage: the workers' and the events publisher's (alarms watch them)."""
    return [queue for queue in resources.queues(stage) if queue.dead_letter is None] + [resources.events_dead_letter(stage)]


def table_properties(table):
    properties = dict(table.definition,
                      PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": table.point_in_time_recovery},
                      SSESpecification={"SSEEnabled": table.kms_encrypted},
                      TimeToLiveSpecification={"AttributeName": store.TTL_ATTRIBUTE, "Enabled": True})
    if table.stream_view_type:  # CloudFormation has no StreamEnabled: a view type is the stream
        properties["StreamSpecification"] = {"StreamViewType": table.stream_view_type}
    return properties


def _queue(queue):
    properties = {"QueueName": queue.name, "SqsManagedSseEnabled": True}  # as SQS encrypts new queues by default
    if queue.visibility_timeout is not None:
        properties["VisibilityTimeout"] = queue.visibility_timeout
    if queue.retention_seconds is not None:
        properties["MessageRetentionPeriod"] = queue.retention_seconds
    if queue.dead_letter is not None:
        properties["RedrivePolicy"] = {"deadLetterTargetArn": {"Fn::GetAtt": [queue.dead_letter.logical_id, "Arn"]},
                                       "maxReceiveCount": queue.max_receives}
    return {"Type": "AWS::SQS::Queue", "Properties": properties}


def worker_resources(stage):
    """Each worker's queue and dead-letter queue, and what Chalice cannot set on its event source
    mapping (deploy/resources.py: partial batch failures, MaximumConcurrency)."""
    found = {queue.logical_id: _queue(queue) for queue in resources.queues(stage)}
    for worker in resources.workers(stage):
        queue = worker.queue.logical_id
        # Chalice names the queue's ARN from its name; the function waits for the queue to exist.
        found[worker.logical_id] = {"DependsOn": [queue], "Properties": {"Events": {
            f"{worker.logical_id}SqsEventSource": {"Properties": dict(worker.mapping)}}}}
    return found


if __name__ == "__main__":
    json.dump(merge_template(sys.argv[1]), sys.stdout, indent=2)
    print()
