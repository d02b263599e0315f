"""The table's stream read as Lambda's event source mapping reads it, for where nothing triggers
the publisher (a moto server: traps.md): `manage.py publish-events [--follow]` and `make run`.
Never deployed.

From the oldest record of every shard (TRIM_HORIZON, parents before children), in batches as
GetRecords returns them, each handed to `handle`, which answers the sequence numbers it could not
publish. Like Lambda, a batch with failures is read again from its first failed record, and a
shard's children wait until it is read to its end. Like the deployed mapping (MaximumRetryAttempts
10), a record still failing after ten retries is given up (handed to `give_up`; in AWS the batch's
range goes to the dead-letter queue) and reading goes on after it. An exception (the local AWS
restarting) is not a failed record: `follow` reads again from the same place, without a limit.
"""
import time


class StreamReader:
    """Keeps a position per shard, not an iterator: each read asks for a fresh iterator there.
    Iterators expire (15 minutes in DynamoDB)."""

    def __init__(self, streams, stream_arn, batch_size=100, max_retries=10, give_up=lambda shard, number: None):
        self._streams, self.arn, self.batch_size = streams, stream_arn, batch_size
        self.max_retries, self._give_up = max_retries, give_up
        self._positions = {}  # shard id -> (iterator type, sequence number) where the next read starts
        self._retries = {}  # shard id -> (the failing record's sequence number, retries so far)
        self._closed = set()  # shards read to their end

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
                    ordered.append((shard["ShardId"], parent if parent in ids else None))
                    placed.add(shard["ShardId"])
        return ordered

    def _iterator(self, shard):
        kind, number = self._positions.get(shard, ("TRIM_HORIZON", None))
        extra = {"SequenceNumber": number} if number else {}
        return self._streams.get_shard_iterator(StreamArn=self.arn, ShardId=shard, ShardIteratorType=kind,
                                                **extra)["ShardIterator"]

    def read_once(self, handle):
        """Everything not read yet, in order. Returns (records, failed records)."""
        seen = failed = 0
        for shard, parent in self._shards():
            if parent is not None and parent not in self._closed:
                continue  # its parent is not read to its end yet (a record there failed)
            iterator = None if shard in self._closed else self._iterator(shard)
            while iterator:
                page = self._streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
                records, iterator = page.get("Records", []), page.get("NextShardIterator")
                if not records:
                    if iterator is None:
                        self._closed.add(shard)
                    break
                unpublished = handle(records)
                seen += len(records)
                if unpublished:
                    failed += len(unpublished)
                    self._failed(shard, unpublished[0])
                    break
                self._retries.pop(shard, None)
                self._positions[shard] = ("AFTER_SEQUENCE_NUMBER", records[-1]["dynamodb"]["SequenceNumber"])
                if iterator is None:
                    self._closed.add(shard)
        return seen, failed

    def _failed(self, shard, number):
        """As Lambda does: the next read starts again at the first failed record, until it has been
        retried `max_retries` times; then it is given up and the next read starts after it."""
        number_before, retries = self._retries.get(shard, (None, -1))
        retries = retries + 1 if number == number_before else 0
        if retries < self.max_retries:
            self._retries[shard] = (number, retries)
            self._positions[shard] = ("AT_SEQUENCE_NUMBER", number)
            return
        self._retries.pop(shard, None)
        self._positions[shard] = ("AFTER_SEQUENCE_NUMBER", number)
        self._give_up(shard, number)

    def follow(self, handle, poll_seconds=1.0, stop=lambda: False, on_error=None):
        """Read until `stop()`; an error of one read goes to `on_error` (raised without one), and the
        next read starts where the last good one ended."""
        while not stop():
            try:
                self.read_once(handle)
            except Exception as error:  # noqa: BLE001 - a local AWS restarting must not end the loop
                if on_error is None:
                    raise
                on_error(error)
            time.sleep(poll_seconds)
