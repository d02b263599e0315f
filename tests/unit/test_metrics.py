"""Metrics as EMF lines (chalicelib.metrics): valid EMF, as few lines as the dimension values
allow, bounded dimensions, nothing outside an invocation."""
import io

import pytest

from chalicelib import metrics
from tests import emf


def test_an_invocation_writes_its_metrics_as_valid_emf_in_one_line():
    out = io.StringIO()
    metrics.begin("notify", "req-1")
    metrics.count("Notifications", Outcome="applied")
    metrics.count("Payments")
    metrics.count("Payments")
    metrics.timing("GatewayLatency", 12.34, Method="alipay.trade.query")
    metrics.timing("GatewayLatency", 20.0, Method="alipay.trade.query")
    metrics.end(out)
    found = {}
    for line in emf.lines_of(out.getvalue()):
        found.update(emf.parse(line))
    base = (("Function", "notify"), ("Stage", "local"))
    assert found == {
        ("Notifications", tuple(sorted(base + (("Outcome", "applied"),)))): 1,
        ("Payments", base): 2,
        ("GatewayLatency", tuple(sorted(base + (("Method", "alipay.trade.query"),)))): [12.3, 20.0],
    }
    assert len(emf.lines_of(out.getvalue())) == 1


def test_sets_whose_dimension_values_conflict_go_on_separate_lines():
    out = io.StringIO()
    metrics.begin("reconcile_worker", "req-2")
    metrics.count("Refunds", Outcome="REFUND_SUCCESS")
    metrics.count("Refunds", Outcome="REFUND_PENDING")
    metrics.count("Notifications", Outcome="applied")  # a third Outcome value: a third line
    metrics.count("GatewayCalls", Method="alipay.trade.query", Code="10000")
    metrics.count("GatewayCalls", Method="alipay.trade.refund", Code="10000")
    metrics.end(out)
    lines = emf.lines_of(out.getvalue())
    found = {}
    for line in lines:
        for key, value in emf.parse(line).items():
            assert key not in found
            found[key] = value
    base = (("Function", "reconcile_worker"), ("Stage", "local"))
    assert found == {
        ("Refunds", tuple(sorted(base + (("Outcome", "REFUND_SUCCESS"),)))): 1,
        ("Refunds", tuple(sorted(base + (("Outcome", "REFUND_PENDING"),)))): 1,
        ("Notifications", tuple(sorted(base + (("Outcome", "applied"),)))): 1,
        ("GatewayCalls", tuple(sorted(base + (("Code", "10000"), ("Method", "alipay.trade.query"))))): 1,
        ("GatewayCalls", tuple(sorted(base + (("Code", "10000"), ("Method", "alipay.trade.refund"))))): 1,
    }
    assert len(lines) == 3  # three Outcome values; the two Methods ride along with the first two


def test_unknown_names_and_dimensions_are_defects():
    metrics.begin("notify")
    try:
        with pytest.raises(KeyError):
            metrics.count("NoSuchMetric")
        with pytest.raises(ValueError):
            metrics.count("Payments", out_trade_no="2026X")  # never an order number
    finally:
        metrics.end(io.StringIO())


def test_outside_an_invocation_nothing_is_recorded_or_written():
    out = io.StringIO()
    metrics.count("Payments")
    metrics.end(out)
    assert out.getvalue() == "" and metrics.context() == {}


def test_the_log_context_names_the_invocation():
    metrics.begin("api_handler", "abc")
    try:
        assert metrics.context() == {"request_id": "abc", "function": "api_handler", "stage": "local"}
    finally:
        metrics.end(io.StringIO())
