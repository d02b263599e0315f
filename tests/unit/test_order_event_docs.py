"""The README's order events: one example per DetailType, each valid under the shipped schema."""
import json
import re

import jsonschema

from chalicelib.service import publish
from tests.vectorfiles import ROOT_PATH

SCHEMA = json.loads((ROOT_PATH / "docs" / "order-event.schema.json").read_text())
README = (ROOT_PATH / "README.md").read_text()


def readme_examples():
    return {kind: json.loads(body) for kind, body in
            re.findall(r"^#### (order\.[a-z.]+)\n```json\n(.*?)\n```", README, re.S | re.M)}


def test_the_readme_shows_one_valid_example_per_detail_type():
    examples = readme_examples()
    assert sorted(examples) == sorted(["order.created", "order.paid", "order.finished", "order.closed",
                                       "order.refund.pending", "order.refund.succeeded", "order.refund.failed",
                                       "order.anomaly"])
    for kind, detail in examples.items():
        jsonschema.validate(detail, SCHEMA)
        assert publish.detail_type(detail["event"]) == kind


def test_the_schema_is_itself_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
