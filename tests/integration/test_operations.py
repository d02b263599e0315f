"""What the service tells an on-call engineer (issue "Run it in production"): valid EMF metrics
for each path through the app, and log lines that carry the request id, function and stage."""
import json

from chalicelib import metrics
from tests import emf
from tests.integration.helpers import create_order, notify


def emitted(text):
    found = {}
    for line in emf.lines_of(text):
        found.update(emf.parse(line))
    return {(name, dict(dims).get("Function"), dict(dims).get("Outcome") or dict(dims).get("Product")
             or dict(dims).get("Reason")): value for (name, dims), value in found.items()}


def test_create_and_notify_emit_their_metrics_as_valid_emf(client, merchant, capsys):
    order = create_order(client, merchant, total_amount="3.00")
    notify(client, merchant.notification(order["out_trade_no"], "3.00"))
    notify(client, merchant.notification(order["out_trade_no"], "9.99"))  # an amount that is not the order's
    notify(client, b"out_trade_no=x&sign=bad")
    found = emitted(capsys.readouterr().out)
    assert found[("OrdersCreated", "api_handler", "page")] == 1
    assert found[("Notifications", "api_handler", "applied")] == 1 and found[("Payments", "api_handler", None)] == 1
    assert found[("Notifications", "api_handler", "amount_mismatch")] == 1
    assert found[("Anomalies", "api_handler", "amount_mismatch")] == 1
    assert found[("Notifications", "api_handler", "bad_signature")] == 1
    assert {name for name, _, _ in found} <= set(metrics.NAMES)


def test_the_notify_function_and_its_5xx_are_counted(client, merchant, capsys, env):
    import os
    os.environ["ALIPAY_SECRET_ID"] = "no/such/secret"
    event = {"requestContext": {"http": {"method": "POST"}}, "body": "a=b", "isBase64Encoded": False}
    assert client.lambda_.invoke("notify", event).payload["statusCode"] == 503
    found = emitted(capsys.readouterr().out)
    assert found[("NotifyServerErrors", "notify", None)] == 1 and found[("Notifications", "notify", "unavailable")] == 1


def test_log_lines_carry_request_id_function_stage_and_the_order(client, merchant, caplog):
    order = create_order(client, merchant, total_amount="3.00")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "chalice_alipay"]
    created = next(line for line in lines if line.get("event") == "order_created")
    assert created["out_trade_no"] == order["out_trade_no"] and created["function"] == "api_handler"
    assert created["stage"] == "local" and created["request_id"]
