"""Last of the end-to-end tests (pytest runs files in name order), so that it reads what the
others wrote too: every metric line of the session — chalice local's and the workers' output — is
valid EMF, and names only metrics the code declares (chalicelib.metrics.NAMES, which the
template's alarms are checked against). It makes its own orders first, so it holds alone too."""
from chalicelib import metrics
from tests import emf


def test_every_metric_line_written_during_the_end_to_end_tests_is_valid_emf(stack, api):
    api.create(product="qr", total_amount="3.00")  # precreate: a gateway call
    paid = api.create(total_amount="4.00")
    api.pay(api.open_cashier(paid))
    api.wait_for(paid["out_trade_no"], lambda order: order["status"] == "TRADE_SUCCESS")
    lines = []
    for name in ("chalice", "workers"):
        path = stack.logs / f"{name}.log"
        if path.exists():
            lines += emf.lines_of(path.read_text(errors="replace"))
    names, functions = set(), set()
    for line in lines:
        for (name, dimensions), _ in emf.parse(line).items():
            names.add(name)
            functions.add(dict(dimensions)["Function"])
            assert dict(dimensions)["Stage"] == "local"
    assert names <= set(metrics.NAMES) and {"OrdersCreated", "Notifications", "Payments", "GatewayCalls"} <= names
    assert "api_handler" in functions
