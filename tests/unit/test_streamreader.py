"""The local stream reader (streamreader.py) over a stream with a split: a parent shard, closed, and
its child. moto has one shard only, so the stream here is a small fake that answers as DynamoDB
Streams does (a closed shard's last page has no NextShardIterator)."""
import streamreader


class SplitStream:
    def __init__(self):
        self.shards = {"parent": ["1", "2"], "child": ["3"]}
        self.closed = {"parent"}

    def describe_stream(self, StreamArn):
        return {"StreamDescription": {"Shards": [{"ShardId": "child", "ParentShardId": "parent"},
                                                 {"ShardId": "parent", "ParentShardId": "expired"}]}}

    def get_shard_iterator(self, StreamArn, ShardId, ShardIteratorType, SequenceNumber=None):
        numbers = self.shards[ShardId]
        start = {"TRIM_HORIZON": 0, "AT_SEQUENCE_NUMBER": numbers.index(SequenceNumber) if SequenceNumber else 0,
                 "AFTER_SEQUENCE_NUMBER": numbers.index(SequenceNumber) + 1 if SequenceNumber else 0}[ShardIteratorType]
        return {"ShardIterator": (ShardId, start)}

    def get_records(self, ShardIterator, Limit):
        shard, start = ShardIterator
        numbers = self.shards[shard][start:start + Limit]
        end = start + len(numbers)
        done = shard in self.closed and end == len(self.shards[shard])
        return {"Records": [{"dynamodb": {"SequenceNumber": n}} for n in numbers],
                "NextShardIterator": None if done else (shard, end)}


def test_a_child_shard_waits_until_its_parent_is_read_to_its_end():
    reads, failing = [], {"2"}

    def handle(records):
        numbers = [r["dynamodb"]["SequenceNumber"] for r in records]
        reads.append(numbers)
        return sorted(failing & set(numbers))
    reader = streamreader.StreamReader(SplitStream(), "arn", batch_size=1)
    assert reader.read_once(handle) == (2, 1)
    assert reads == [["1"], ["2"]]  # the child's record 3 waits: 2 came before it
    failing.clear()
    assert reader.read_once(handle) == (2, 0)
    assert reads[2:] == [["2"], ["3"]]
    assert reader.read_once(handle) == (0, 0)  # the parent is closed, the child read: nothing again


def test_a_given_up_record_of_the_parent_lets_the_child_be_read():
    given_up, reads = [], []

    def handle(records):
        numbers = [r["dynamodb"]["SequenceNumber"] for r in records]
        reads.append(numbers)
        return ["2"] if "2" in numbers else []
    reader = streamreader.StreamReader(SplitStream(), "arn", max_retries=2,
                                       give_up=lambda shard, number: given_up.append((shard, number)))
    for _ in range(3):
        reader.read_once(handle)
    assert given_up == [("parent", "2")] and reads == [["1", "2"], ["2"], ["2"]]
    reader.read_once(handle)
    assert reads[3:] == [["3"]]
