"""The table's layout: what `manage.py create-table` creates, brings an existing table to
(the `due` index, TTL on purge_at, the stream), and the migration from the old `waiting` index."""
from botocore.exceptions import ClientError

from chalicelib.store import DUE_INDEX, LEGACY_INDEX, TTL_ATTRIBUTE, due_shard


class TableLayoutError(Exception):
    """An existing table that create-table cannot bring to the current layout by itself."""


def table_definition(table):
    """What `manage.py create-table` creates: keys, the sharded `due` index, on-demand billing."""
    return {
        "TableName": table,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"},
                                 *_DUE_ATTRIBUTES],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        "GlobalSecondaryIndexes": [due_index()],
    }


_DUE_ATTRIBUTES = [{"AttributeName": "due_shard", "AttributeType": "S"}, {"AttributeName": "due_at", "AttributeType": "N"}]


def due_index():
    return {"IndexName": DUE_INDEX,
            "KeySchema": [{"AttributeName": "due_shard", "KeyType": "HASH"},
                          {"AttributeName": "due_at", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"}}


def ensure_table(client, table):
    """Create the table, or add what an older one lacks (the due index, TTL). Idempotent; says
    what it did."""
    done = []
    try:
        description = client.describe_table(TableName=table)["Table"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        client.create_table(**table_definition(table))
        client.get_waiter("table_exists").wait(TableName=table)
        description = client.describe_table(TableName=table)["Table"]
        done.append("created table")
    done.extend(_ensure_stream(client, table, description))
    indexes = {index["IndexName"] for index in description.get("GlobalSecondaryIndexes", [])}
    if DUE_INDEX not in indexes:
        client.update_table(TableName=table, AttributeDefinitions=_DUE_ATTRIBUTES,
                            GlobalSecondaryIndexUpdates=[{"Create": due_index()}])
        done.append(f"added index {DUE_INDEX}")
    if LEGACY_INDEX in indexes:
        done.append(f"index {LEGACY_INDEX} is the old layout: run `manage.py migrate-due`, then delete it")
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and ttl.get("AttributeName") != TTL_ATTRIBUTE:
        # An older layout put the TTL on `expires_at`, which orders now carry: DynamoDB would
        # delete orders. AWS allows one TTL change at a time, so this is the admin's step.
        raise TableLayoutError(
            f"TTL of {table} is on {ttl.get('AttributeName')}; disable it (update-time-to-live "
            f"Enabled=false), wait until DISABLED, then run create-table again to put it on {TTL_ATTRIBUTE}")
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        client.update_time_to_live(TableName=table,
                                   TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE})
        done.append(f"enabled TTL on {TTL_ATTRIBUTE}")
    return done or ["table is up to date"]


def migrate_due(client, table, now_epoch, start=None, page_size=100):
    """Move orders written under the old layout (`waiting` = WAIT | REFUND) onto the `due` index,
    due now, so the next pass looks at each once. Idempotent (each write is conditioned on the
    old attribute still being there) and resumable: yields (moved, key to resume from) per page."""
    while True:
        kwargs = {"ExclusiveStartKey": start} if start else {}
        page = client.scan(TableName=table, Limit=page_size, FilterExpression="attribute_exists(waiting)",
                           ProjectionExpression="pk, sk", **kwargs)
        moved = 0
        for item in page.get("Items", []):
            out_trade_no = item["pk"]["S"].split("#", 1)[1]
            try:
                client.update_item(TableName=table, Key=item, ConditionExpression="attribute_exists(waiting)",
                                   UpdateExpression="SET due_shard = :s, due_at = :a REMOVE waiting",
                                   ExpressionAttributeValues={":s": {"S": due_shard(out_trade_no)},
                                                              ":a": {"N": str(int(now_epoch))}})
                moved += 1
            except ClientError as error:
                if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
        start = page.get("LastEvaluatedKey")
        yield moved, start
        if not start:
            return


# ---- the table's stream, read by the events publisher (contract, "Order events") ---------------

# New and old images: a refund record is rewritten whole, and only the old image tells whether a
# rewrite changed what is published (its status or amount) or nothing a consumer sees.
STREAM_VIEW_TYPE = "NEW_AND_OLD_IMAGES"
_READABLE_VIEWS = (STREAM_VIEW_TYPE, "NEW_IMAGE")  # NEW_IMAGE works too: unchanged rewrites then repeat an id


class NoStream(Exception):
    """The table has no stream: `manage.py create-table` enables it."""


def latest_stream_arn(dynamodb, table):
    """The ARN of the table's stream (the publisher's mapping reads it, and so does `manage.py publish-events`)."""
    arn = dynamodb.describe_table(TableName=table)["Table"].get("LatestStreamArn")
    if not arn:
        raise NoStream(f"{table} has no stream; run `python manage.py create-table`")
    return arn


def stream_specification():
    return {"StreamEnabled": True, "StreamViewType": STREAM_VIEW_TYPE}


def _ensure_stream(client, table, description):
    """The stream the events publisher reads; a stream without new images is the admin's to replace
    (DynamoDB changes a view type only by disabling the stream, which gives it a new ARN)."""
    stream = description.get("StreamSpecification") or {}
    if not stream.get("StreamEnabled"):
        client.update_table(TableName=table, StreamSpecification=stream_specification())
        client.get_waiter("table_exists").wait(TableName=table)  # one table update at a time
        return [f"enabled stream ({STREAM_VIEW_TYPE})"]
    if stream.get("StreamViewType") not in _READABLE_VIEWS:
        raise TableLayoutError(
            f"the stream of {table} is {stream.get('StreamViewType')}: the events publisher needs new images; "
            f"disable the stream (update-table --stream-specification StreamEnabled=false), then run "
            f"create-table again (the new stream has a new ARN: deploy the publisher again)")
    return []
