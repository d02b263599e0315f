"""How the store turns items into DynamoDB attributes and back: its own code (boto3's
serializer costs five times as much on every write), held to boto3's answers."""
from decimal import Decimal

import pytest

from chalicelib import store


def test_the_stores_own_serializer_agrees_with_boto3s():
    from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
    item = {"s": "文字 A+B", "n": 3, "d": Decimal("88.80"), "b": True, "f": False, "none": None,
            "m": {"x": "1", "y": [Decimal("0.01"), "z", {"k": None}], "e": {}}, "l": []}
    expected = {k: TypeSerializer().serialize(v) for k, v in item.items() if v is not None}
    assert store._dump(item) == expected
    assert store._load(expected) == {k: TypeDeserializer().deserialize(v) for k, v in expected.items()}
    with pytest.raises(TypeError):
        store._dump({"f": 1.5})  # floats never reach DynamoDB: money is Decimal
