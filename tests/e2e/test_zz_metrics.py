"""Last of the end-to-end tests (pytest runs files in name order): every metric line the service
wrote while the others ran — chalice local's and the workers' output — is valid EMF, and names
only metrics the code declares (chalicelib.metrics.NAMES, which the template's alarms are
checked against)."""
from chalicelib import metrics
from tests import emf


def test_every_metric_line_written_during_the_end_to_end_tests_is_valid_emf(stack):
    lines = []
    for name in ("chalice", "workers"):
        path = stack.logs / f"{name}.log"
        if path.exists():
            lines += emf.lines_of(path.read_text(errors="replace"))
    assert len(lines) >= 20, "the end-to-end tests should have written metrics"
    names, functions = set(), set()
    for line in lines:
        for (name, dimensions), _ in emf.parse(line).items():
            names.add(name)
            functions.add(dict(dimensions)["Function"])
            assert dict(dimensions)["Stage"] == "local"
    assert names <= set(metrics.NAMES) and {"OrdersCreated", "Notifications", "Payments", "GatewayCalls"} <= names
    assert "api_handler" in functions
