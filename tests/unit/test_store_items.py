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


class BatchGets:
    """batch_get_item answering from `items`, `per_call` keys at a time: the rest come back as
    UnprocessedKeys, as DynamoDB does when a call runs out of capacity."""

    def __init__(self, items, per_call):
        self.items, self.per_call, self.calls = items, per_call, []

    def batch_get_item(self, RequestItems):
        (table, request), = RequestItems.items()
        self.calls.append(len(request["Keys"]))
        assert request["ConsistentRead"] is True
        keys, later = request["Keys"][:self.per_call], request["Keys"][self.per_call:]
        found = [self.items[key["pk"]["S"]] for key in keys if key["pk"]["S"] in self.items]
        return {"Responses": {table: found}, "UnprocessedKeys": {table: dict(request, Keys=later)} if later else {}}


def item(no, product, total):
    return store._dump({"out_trade_no": no, "product": product, "total_amount": Decimal(total)})


def test_products_and_totals_asks_again_for_unprocessed_keys_and_leaves_out_unknown_orders():
    items = {f"ORDER#N{i}": item(f"N{i}", "page", f"{i}.00") for i in range(150)}
    client, sleeps = BatchGets(items, per_call=60), []
    found = store.OrderStore(client, "t", sleep=sleeps.append).products_and_totals(
        [f"N{i}" for i in range(150)] + ["MISSING", "N3"])
    assert found == {f"N{i}": ("page", Decimal(f"{i}.00")) for i in range(150)}
    assert client.calls == [100, 40, 51] and len(sleeps) == 1  # 100 keys a call: 60 then 40; then 51, 60 at most


def test_products_and_totals_gives_up_retryably_when_keys_stay_unprocessed():
    from chalicelib.errors import Unavailable
    client, sleeps = BatchGets({"ORDER#N1": item("N1", "qr", "1.00")}, per_call=0), []
    with pytest.raises(Unavailable):
        store.OrderStore(client, "t", sleep=sleeps.append).products_and_totals(["N1"])
    assert client.calls == [1] * 5 and len(sleeps) == 4
