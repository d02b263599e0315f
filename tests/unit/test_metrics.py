"""Metrics as EMF lines (chalicelib.metrics): valid EMF, one line per set of dimension values,
bounded dimensions, nothing outside an invocation."""
import io

import pytest

from chalicelib import metrics
from tests import emf


def test_an_invocation_writes_valid_emf_one_line_per_dimension_set():
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
    assert len(emf.lines_of(out.getvalue())) == 3


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
