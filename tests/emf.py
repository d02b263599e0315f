"""CloudWatch Embedded Metric Format, checked as CloudWatch reads it (the specification's rules:
an `_aws` object with an integer Timestamp and CloudWatchMetrics directives; each directive's
Namespace, Dimensions as lists of at most 30 keys present at the root as strings, Metrics with a
Name present at the root as a number or a list of numbers, and a known Unit)."""
import json

UNITS = {"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
         "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
         "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
         "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"}


def parse(line):
    """The metrics of one EMF line as {(name, dimensions as a sorted tuple): value}; AssertionError
    if the line is not valid EMF."""
    document = json.loads(line)
    meta = document["_aws"]
    assert isinstance(meta["Timestamp"], int) and meta["Timestamp"] > 1_600_000_000_000
    found = {}
    assert meta["CloudWatchMetrics"], "no directive"
    for directive in meta["CloudWatchMetrics"]:
        assert isinstance(directive["Namespace"], str) and directive["Namespace"]
        assert directive["Dimensions"] and all(isinstance(d, list) and 0 < len(d) <= 30 for d in directive["Dimensions"])
        keys = {key for dimension_set in directive["Dimensions"] for key in dimension_set}
        assert all(isinstance(document.get(key), str) for key in keys), keys
        assert 0 < len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            numbers = value if isinstance(value, list) else [value]
            assert numbers and all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers)
            assert metric.get("Unit", "None") in UNITS
            found[(metric["Name"], tuple(sorted((k, document[k]) for k in keys)))] = value
    return found


def lines_of(text):
    return [line for line in text.splitlines() if line.startswith('{"_aws"')]
