"""The table's stream read as Lambda's event source mapping reads it, for where nothing triggers
the publisher (a moto server: traps.md): `manage.py publish-events [--follow]` and `make run`.

From the oldest record of every shard (TRIM_HORIZON, parents before children), in batches as
GetRecords returns them, each handed to `handle`, which answers the sequence numbers it could not
publish. Like Lambda, a batch with failures is read again from its first failed record.
"""
import time


class NoStream(Exception):
    """The table has no stream: `manage.py create-table` enables it."""


def latest_stream_arn(dynamodb, table):
    arn = dynamodb.describe_table(TableName=table)["Table"].get("LatestStreamArn")
    if not arn:
        raise NoStream(f"{table} has no stream; run `python manage.py create-table`")
    return arn


class StreamReader:
    def __init__(self, streams, stream_arn, batch_size=100):
        self._streams, self.arn, self.batch_size = streams, stream_arn, batch_size
        self._iterators = {}  # shard id -> where to read next; None once a closed shard is read

    def _shards(self):
        shards, start = [], None
        while True:
            kwargs = {"ExclusiveStartShardId": start} if start else {}
            page = self._streams.describe_stream(StreamArn=self.arn, **kwargs)["StreamDescription"]
            shards.extend(page.get("Shards", []))
            start = page.get("LastEvaluatedShardId")
            if not start:
                break
        ids = {shard["ShardId"] for shard in shards}
        ordered, placed = [], set()
        while len(ordered) < len(shards):  # a child after its parent: per-key order survives a split
            for shard in shards:
                parent = shard.get("ParentShardId")
                if shard["ShardId"] not in placed and (parent not in ids or parent in placed):
                    ordered.append(shard["ShardId"])
                    placed.add(shard["ShardId"])
        return ordered

    def _iterator(self, shard, kind="TRIM_HORIZON", sequence_number=None):
        extra = {"SequenceNumber": sequence_number} if sequence_number else {}
        return self._streams.get_shard_iterator(StreamArn=self.arn, ShardId=shard, ShardIteratorType=kind,
                                                **extra)["ShardIterator"]

    def read_once(self, handle):
        """Everything not read yet, in order. Returns (records, failed records)."""
        seen = failed = 0
        for shard in self._shards():
            if shard not in self._iterators:
                self._iterators[shard] = self._iterator(shard)
            iterator = self._iterators[shard]
            while iterator:
                page = self._streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
                records = page.get("Records", [])
                if not records:
                    self._iterators[shard] = page.get("NextShardIterator")  # None: the shard is closed
                    break
                unpublished = handle(records)
                seen += len(records)
                if unpublished:
                    failed += len(unpublished)
                    # As Lambda does: the next read starts again at the first failed record.
                    self._iterators[shard] = self._iterator(shard, "AT_SEQUENCE_NUMBER", unpublished[0])
                    break
                iterator = self._iterators[shard] = page.get("NextShardIterator")
        return seen, failed

    def follow(self, handle, poll_seconds=1.0, stop=lambda: False):
        while not stop():
            self.read_once(handle)
            time.sleep(poll_seconds)
