"""Before `chalice deploy --stage STAGE`: what the functions need at deploy time and Chalice
cannot create (`manage.py deploy-prepare --stage STAGE`). Idempotent: each run brings the
stage to deploy/resources.py and says what it changed.

- the orders table with its index, TTL, point-in-time recovery and KMS encryption (and its
  stream, once resources.Table asks for one: its ARN then goes into the stage's environment as
  ORDERS_STREAM_ARN, which app.py reads at import);
- the workers' queues and dead-letter queues (Chalice's `on_sqs_message` needs them to exist);
- the merchant secret, without a value (`manage.py put-secret` writes it);
- no event source mapping from a worker's queue to its function that Chalice did not record: a
  `chalice deploy` that failed after making one recorded nothing, and the next one would make it
  again, which AWS refuses (ResourceConflictException);
- the names above in the stage's `environment_variables` (.chalice/config.json).
"""
import json
import time

from botocore.exceptions import ClientError

from chalicelib import store
from chalicelib.service import publish
from deploy import aws, resources, stageconfig


def prepare(stage, client, project_dir, sleep=time.sleep):
    """`client(name)` gives a boto3 client. Returns the lines to print."""
    table = resources.table(stage)
    lines, environment = ensure_table(client("dynamodb"), table, sleep)
    for queue in resources.queues(stage):
        lines += ensure_queue(client("sqs"), queue)
    lines += ensure_queue(client("sqs"), resources.events_dead_letter(stage))
    lines += [f"event bus: {line}" for line in publish.ensure_bus(client("events"), resources.event_bus_name(stage))]
    lines += ensure_secret(client("secretsmanager"), resources.secret_name(stage))
    lines += remove_unrecorded_mappings(client("lambda"), client("sqs"), stage, project_dir, sleep,
                                        stream_arn=environment.get("ORDERS_STREAM_ARN"))
    environment = {**resources.environment(stage), **environment}
    changed = stageconfig.set_environment(project_dir, stage, environment)
    lines.append(f"config: stage {stage} " + (f"now sets {', '.join(changed)}" if changed else "already has the names"))
    return lines


def _describe(dynamodb, name):
    try:
        return dynamodb.describe_table(TableName=name)["Table"]
    except ClientError as error:
        if aws.code(error) != "ResourceNotFoundException":
            raise
        return None


def ensure_table(dynamodb, table, sleep=time.sleep):
    """(lines, environment): the table as `table` describes it, and the stream's ARN if any."""
    prefix, lines = f"table {table.name}: ", []
    if _describe(dynamodb, table.name) is None:
        extra = {}
        if table.kms_encrypted:
            extra["SSESpecification"] = {"Enabled": True, "SSEType": "KMS"}
        if table.stream_view_type:
            extra["StreamSpecification"] = store.stream_specification()
        dynamodb.create_table(**table.definition, **extra)
        dynamodb.get_waiter("table_exists").wait(TableName=table.name)
        lines.append("created")
    # The index, the TTL (on purge_at, never on an order's expires_at) and the stream are store's to judge.
    lines += [line for line in store.ensure_table(dynamodb, table.name) if line != "table is up to date"]
    description = _describe(dynamodb, table.name)
    lines += _encryption(dynamodb, table, description)
    lines += _point_in_time_recovery(dynamodb, table, sleep)
    environment = {"ORDERS_STREAM_ARN": description["LatestStreamArn"]} if table.stream_view_type else {}
    return [prefix + line for line in lines or ["up to date"]], environment


def _encryption(dynamodb, table, description):
    sse = description.get("SSEDescription") or {}
    if not table.kms_encrypted or (sse.get("Status") in ("ENABLED", "UPDATING") and sse.get("SSEType") == "KMS"):
        return []
    try:
        dynamodb.update_table(TableName=table.name, SSESpecification={"Enabled": True, "SSEType": "KMS"})
    except ClientError as error:
        if aws.code(error) != "ResourceInUseException":
            raise
        # DynamoDB takes one table update at a time (an index may be building): not a reason to
        # stop the deploy; the next run finishes it.
        return ["busy (an index is being built?): run deploy-prepare again later to switch encryption to KMS"]
    return ["encryption switched to the AWS managed KMS key"]


def _point_in_time_recovery(dynamodb, table, sleep):
    if not table.point_in_time_recovery:
        return []
    status = dynamodb.describe_continuous_backups(TableName=table.name)["ContinuousBackupsDescription"]
    if status.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus") == "ENABLED":
        return []
    for attempt in range(10):
        try:
            dynamodb.update_continuous_backups(
                TableName=table.name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
            return ["point-in-time recovery enabled"]
        except ClientError as error:
            # A new table's backups are being enabled for a short while after its creation.
            if aws.code(error) != "ContinuousBackupsUnavailableException" or attempt == 9:
                raise
            sleep(6)


def queue_attributes(sqs, queue):
    """The queue's SQS attributes as resources.Queue defines them (the dead-letter queue exists)."""
    attributes = {}
    if queue.visibility_timeout is not None:
        attributes["VisibilityTimeout"] = str(queue.visibility_timeout)
    if queue.retention_seconds is not None:
        attributes["MessageRetentionPeriod"] = str(queue.retention_seconds)
    if queue.dead_letter is not None:
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": aws.queue_arn(sqs, queue.dead_letter.name),
                                                  "maxReceiveCount": queue.max_receives})
    return attributes


def _same(name, current, wanted):
    if name == "RedrivePolicy" and current:
        def normal(policy):
            return {key: str(value) for key, value in json.loads(policy).items()}
        return normal(current) == normal(wanted)
    return current == wanted


def ensure_queue(sqs, queue):
    attributes = queue_attributes(sqs, queue)
    try:
        url = sqs.get_queue_url(QueueName=queue.name)["QueueUrl"]
    except ClientError as error:
        if aws.code(error) not in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            raise
        sqs.create_queue(QueueName=queue.name, Attributes=attributes)
        return [f"queue {queue.name}: created"]
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(attributes) or ["QueueArn"])["Attributes"]
    different = {name: value for name, value in attributes.items() if not _same(name, current.get(name), value)}
    if different:  # e.g. a queue that `manage.py reconcile` made with SQS's defaults
        sqs.set_queue_attributes(QueueUrl=url, Attributes=different)
        return [f"queue {queue.name}: set {', '.join(sorted(different))}"]
    return [f"queue {queue.name}: up to date"]


def ensure_secret(secrets, name):
    """The secret, created without a value when missing: a value never passes through here."""
    try:
        description = secrets.describe_secret(SecretId=name)
    except ClientError as error:
        if aws.code(error) != "ResourceNotFoundException":
            raise
        secrets.create_secret(Name=name, Description=resources.SECRET_DESCRIPTION)
        return [f"secret {name}: created without a value; write it with `manage.py put-secret`"]
    if not description.get("VersionIdsToStages"):
        return [f"secret {name}: exists, still without a value; write it with `manage.py put-secret`"]
    return [f"secret {name}: exists (its value is not read here)"]


def remove_unrecorded_mappings(lambda_, sqs, stage, project_dir, sleep=time.sleep, stream_arn=None):
    """Delete what a failed `chalice deploy` left between a worker's queue (or the orders stream)
    and its function, so that the next one can make it again (messages and records wait meanwhile)."""
    recorded, lines = stageconfig.recorded_event_sources(project_dir, stage), []
    sources = [(worker.function, aws.queue_arn(sqs, worker.queue.name), worker.queue.name)
               for worker in resources.workers(stage)]
    if stream_arn:
        sources.append((resources.PUBLISHER_FUNCTION, stream_arn, "the orders stream"))
    for chalice_name, source_arn, label in sources:
        function = resources.function_name(stage, chalice_name)
        function_arn = aws.function_arn(lambda_, function)
        if function_arn is None:
            continue  # a first deploy: nothing can be left over
        mappings = lambda_.list_event_source_mappings(EventSourceArn=source_arn,
                                                      FunctionName=function_arn)["EventSourceMappings"]
        for mapping in mappings:
            if mapping["UUID"] not in recorded:
                lambda_.delete_event_source_mapping(UUID=mapping["UUID"])
                _wait_until_deleted(lambda_, mapping["UUID"], sleep)
                lines.append(f"mapping {label} -> {function}: {mapping['UUID']} was not recorded by "
                             f"chalice (a failed deploy left it): deleted, `chalice deploy` makes it again")
    return lines


def _wait_until_deleted(lambda_, uuid, sleep):
    """A mapping is Deleting for a while; until it is gone, AWS refuses to make the pair again."""
    for _ in range(60):
        try:
            lambda_.get_event_source_mapping(UUID=uuid)
        except ClientError as error:
            if aws.code(error) == "ResourceNotFoundException":
                return
            raise
        sleep(2)
