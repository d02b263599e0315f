"""The sandbox's memory and its delivery rules, in-process."""
import time

from sandbox.server import RETRY_SCHEDULE, Sandbox
from tests.httpfake import FakeServer


def test_state_survives_a_restart_and_reset_keeps_registrations(tmp_path):
    path = tmp_path / "state.json"
    first = Sandbox(path)
    first.state.data["apps"]["2021"] = {"public_key": "x", "seller_id": "2088"}
    first.state.data["trades"]["t"] = {"out_trade_no": "A"}
    first.state.save()
    second = Sandbox(path)
    assert second.state.data["trades"]["t"]["out_trade_no"] == "A"
    assert second.state.data["alipay_private_key"] == first.state.data["alipay_private_key"]
    second.state.reset()
    third = Sandbox(path)
    assert third.state.data["trades"] == {} and "2021" in third.state.data["apps"]


class Merchant:
    """A notify_url that answers what it is told to, and counts."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.fake = FakeServer(lambda method, path, body: (
            200, (self.answers.pop(0) if self.answers else "success").encode(), "text/plain", 0), "/notify")
        self.url = self.fake.url

    @property
    def seen(self):
        return self.fake.requests


def test_anything_but_exactly_success_is_retried_on_the_scaled_schedule():
    merchant = Merchant(["success ", "SUCCESS", "<html>ok</html>"])
    sandbox = Sandbox(None, time_factor=0.0)
    trade = {"id": "t", "kind": "openapi", "out_trade_no": "A", "notify_url": merchant.url}
    entry = sandbox.queue(trade, ({"notify_id": "n1", "trade_status": "TRADE_SUCCESS"}, ("a=b", "x/y")), "test")
    for _ in range(4):
        sandbox.deliver_due()
    assert [a["body"] for a in entry["attempts"]] == ["success ", "SUCCESS", "<html>ok</html>", "success"]
    assert entry["done"] and len(merchant.seen) == 4
    merchant.fake.close()


def test_retries_stop_after_the_schedule_and_wait_between_attempts():
    merchant = Merchant(["failure"] * 20)
    sandbox = Sandbox(None, time_factor=1.0)
    trade = {"id": "t", "kind": "openapi", "out_trade_no": "A", "notify_url": merchant.url}
    entry = sandbox.queue(trade, ({"notify_id": "n1"}, ("a=b", "x/y")), "test")
    sandbox.deliver_due()
    sandbox.deliver_due()  # not due: the first retry waits 4 minutes
    assert len(entry["attempts"]) == 1 and entry["next_at"] > time.time() + 200
    sandbox.time_factor = 0.0
    for _ in range(len(RETRY_SCHEDULE) + 3):
        entry["next_at"] = 0
        sandbox.deliver_due()
    assert len(entry["attempts"]) == len(RETRY_SCHEDULE) + 1 and entry["gave_up"] and not entry["done"]
    merchant.fake.close()
