"""CloudWatch metrics as Embedded Metric Format (EMF) lines, written by hand: no agent, no
dependency, nothing at cold start. Each invocation collects its counts and timings in memory and
writes them when it ends, usually as one JSON line (more only when two sets of dimension values
conflict), straight to stdout: CloudWatch reads an EMF line only when the whole log event is that JSON.

Dimensions stay few and bounded: Stage and Function always, plus at most one of Outcome, Product,
Method and Code, Reason (each from a closed set). Never an order number. Every metric name the code
may emit is in NAMES, so the template's alarms can be checked against it.
"""
import functools
import json
import os
import sys
import threading
import time

NAMESPACE = "ChaliceAlipay"
COUNT, MILLISECONDS = "Count", "Milliseconds"

# name -> (unit, the extra dimensions it carries)
NAMES = {
    "Notifications": (COUNT, ("Outcome",)),        # applied, duplicate, stale, bad_signature, malformed, ...
    "NotifyServerErrors": (COUNT, ()),               # answered 5xx: Alipay retries, someone should look
    "Anomalies": (COUNT, ("Reason",)),              # amount_mismatch, app_id_mismatch, paid_after_local_close, ...
    "Payments": (COUNT, ()),                        # any transition into TRADE_SUCCESS / TRADE_FINISHED
    "OrdersCreated": (COUNT, ("Product",)),
    "GatewayCalls": (COUNT, ("Method", "Code")),
    "GatewayLatency": (MILLISECONDS, ("Method",)),
    "Refunds": (COUNT, ("Outcome",)),               # REFUND_SUCCESS, REFUND_FAILED, REFUND_PENDING, deferred
    "RefundsPendingOverAnHour": (COUNT, ()),
    "ReconcileDue": (COUNT, ()),
    "ReconcileQueued": (COUNT, ()),
    "ReconcileProcessed": (COUNT, ()),
    "ReconcilePaid": (COUNT, ()),
    "ReconcileClosed": (COUNT, ()),
    "ReconcileErrors": (COUNT, ()),
    "EventsPublished": (COUNT, ()),
    "EventsFailed": (COUNT, ()),
}

_DIMENSIONS = {name: frozenset(dimensions) for name, (_, dimensions) in NAMES.items()}
_local = threading.local()


class Recorder:
    def __init__(self, function, stage):
        self.base = {"Stage": stage, "Function": function}
        self.sets = {}  # tuple of (dimension, value) -> {metric name: value or [values]}

    def add(self, name, value, dimensions):
        if dimensions.keys() != _DIMENSIONS[name]:  # an unknown name is a defect: KeyError
            raise ValueError(f"metric {name} takes dimensions {NAMES[name][1]}, not {tuple(dimensions)}")
        key = tuple(sorted((k, str(v)) for k, v in dimensions.items())) if dimensions else ()
        values = self.sets.get(key)
        if values is None:
            values = self.sets[key] = {}
        if NAMES[name][0] == MILLISECONDS:
            values.setdefault(name, []).append(value)
        else:
            values[name] = values.get(name, 0) + value

    def lines(self, timestamp_ms):
        """As few lines as EMF allows: one line carries several sets, a directive each, when their
        dimension values agree and their metric names differ (each is a member of the line's root)."""
        merged = []  # (root members, directives)
        for key, values in self.sets.items():
            for root, directives in merged:
                if all(root.get(k, v) == v for k, v in key) and not values.keys() & root.keys():
                    break
            else:
                root, directives = dict(self.base), []
                merged.append((root, directives))
            root.update(key)
            root.update(values)
            directives.append(_directive(tuple(self.base) + tuple(k for k, _ in key), tuple(values)))
        for root, directives in merged:
            members = json.dumps(root, separators=(",", ":"))
            yield f'{{"_aws":{{"Timestamp":{timestamp_ms},"CloudWatchMetrics":[{",".join(directives)}]}},{members[1:]}'


@functools.lru_cache(maxsize=512)
def _directive(dimensions, names):
    """A metric directive's JSON: the same few combinations recur, so each is written once."""
    return json.dumps({"Namespace": NAMESPACE, "Dimensions": [list(dimensions)],
                       "Metrics": [{"Name": name, "Unit": NAMES[name][0]} for name in names]}, separators=(",", ":"))


def begin(function, request_id=None):
    """Start collecting for one invocation of `function` in this thread."""
    _local.recorder = Recorder(function, os.environ.get("STAGE") or "local")
    _local.request_id = request_id


def count(name, value=1, **dimensions):
    recorder = getattr(_local, "recorder", None)
    if recorder is not None:  # outside an invocation (manage.py, tests of one module): nothing to do
        recorder.add(name, value, dimensions)


def timing(name, milliseconds, **dimensions):
    count(name, round(milliseconds, 1), **dimensions)


def end(stream=None):
    """Write the invocation's metrics and stop collecting."""
    recorder = getattr(_local, "recorder", None)
    _local.recorder = None
    if recorder is None or not recorder.sets:
        return
    stream = stream or sys.stdout
    stream.write("".join(line + "\n" for line in recorder.lines(int(time.time() * 1000))))
    stream.flush()


def context():
    """What every log line of the invocation carries: request id, function and stage."""
    recorder = getattr(_local, "recorder", None)
    if recorder is None:
        return {}
    return {"request_id": getattr(_local, "request_id", None), "function": recorder.base["Function"],
            "stage": recorder.base["Stage"]}
