"""Last of the end-to-end tests (pytest runs files in name order), so that it reads what the
others wrote too: every metric line of the session — chalice local's and the workers' output — is
valid EMF, and names only metrics the code declares (chalicelib.metrics.NAMES, which the
template's alarms are checked against). It makes its own orders first, so it holds alone too."""
import time

from chalicelib import metrics
from tests import emf


def test_every_metric_line_written_during_the_end_to_end_tests_is_valid_emf(stack, api):
    api.create(product="qr", total_amount="3.00")  # precreate: a gateway call
    paid = api.create(total_amount="4.00")
    api.pay(api.open_cashier(paid))
    api.wait_for(paid["out_trade_no"], lambda order: order["status"] == "TRADE_SUCCESS")
    needed = {"OrdersCreated", "Notifications", "Payments", "GatewayCalls"}
    deadline = time.monotonic() + 10  # a request writes its metrics as it ends, after its answer's write
    while True:
        names, functions = read_metrics(stack)
        if needed <= names or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert names <= set(metrics.NAMES) and needed <= names
    assert "api_handler" in functions


def read_metrics(stack):
    """(metric names, Function dimensions) of every line written so far, each checked as EMF."""
    lines = []
    for name in ("chalice", "workers"):
        path = stack.logs / f"{name}.log"
        if path.exists():
            text = path.read_text(errors="replace")
            lines += emf.lines_of(text[:text.rfind("\n") + 1])  # whole lines: the stack is still writing
    names, functions = set(), set()
    for line in lines:
        for (name, dimensions), _ in emf.parse(line).items():
            names.add(name)
            functions.add(dict(dimensions)["Function"])
            assert dict(dimensions)["Stage"] == "local"
    return names, functions
