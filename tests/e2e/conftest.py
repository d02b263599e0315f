"""The real local stack (moto server, sandbox, chalice local) on free ports, once per session."""
import json
import time
from html.parser import HTMLParser
from urllib.parse import urljoin

import pytest
import urllib3

from chalicelib.orders import PAID
from devstack import Stack

@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    # Alipay's retry schedule (4m, 10m, ...) runs 500 times faster: 0.48 s, 1.2 s, ...
    s = Stack(tmp_path_factory.mktemp("stack"), time_factor=0.002).start()
    yield s
    s.stop()


class Api:
    """What a merchant's backend and a buyer's browser do, over HTTP."""

    def __init__(self, stack):
        self.stack = stack
        self.http = urllib3.PoolManager()
        self.auth = {"Authorization": f"Bearer {stack.token}"}

    def create(self, product="page", total_amount="88.80", **extra):
        body = {"product": product, "subject": "测试商品 A+B", "total_amount": total_amount, **extra}
        r = self.http.request("POST", self.stack.api_url + "/orders", body=json.dumps(body),
                              headers={**self.auth, "Content-Type": "application/json"})
        assert r.status == 201, r.data
        return json.loads(r.data)

    def order(self, out_trade_no):
        r = self.http.request("GET", f"{self.stack.api_url}/orders/{out_trade_no}", headers=self.auth)
        return json.loads(r.data)

    def events(self, out_trade_no):
        r = self.http.request("GET", f"{self.stack.api_url}/orders/{out_trade_no}/events", headers=self.auth)
        return json.loads(r.data)["events"]

    def wait_for(self, out_trade_no, predicate, timeout=15.0):
        """The order once `predicate` holds; AssertionError (with the order) if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            order = self.order(out_trade_no)
            if predicate(order):
                return order
            assert time.monotonic() < deadline, f"{out_trade_no} never got there: {order}"
            time.sleep(0.1)

    def get(self, url, **kw):
        return self.http.request("GET", url, redirect=False, **kw)

    def post(self, path, body=None):
        """A POST to the API: (status, its JSON answer)."""
        r = self.http.request("POST", self.stack.api_url + path, body=json.dumps(body) if body is not None else None,
                              headers={**self.auth, "Content-Type": "application/json"})
        return r.status, json.loads(r.data)

    def switch(self, method, **values):
        """What the sandbox gateway answers to `method` next (its switches)."""
        r = self.http.request("POST", self.stack.sandbox_url + "/sandbox/switches", body=json.dumps(
            {"method": method, **values}), headers={"Content-Type": "application/json"})
        assert r.status == 200, r.data

    def paid_order(self, total_amount="50.00"):
        """A page order paid at the cashier, once the notification has recorded it: its out_trade_no."""
        order = self.create("page", total_amount=total_amount)
        self.pay(self.open_cashier(order))
        self.wait_for(order["out_trade_no"], lambda o: o["status"] in PAID)
        return order["out_trade_no"]

    def open_cashier(self, order):
        """The browser follows the payment URL to the sandbox cashier; returns the cashier URL."""
        r = self.get(order["payment"]["url"])
        assert r.status == 302, r.data
        cashier = urljoin(self.stack.sandbox_url, r.headers["Location"])
        assert self.get(cashier).status == 200  # the browser shows it: now the trade exists at Alipay
        return cashier

    def pay(self, cashier_url):
        r = self.http.request("POST", cashier_url + "/pay", redirect=False)
        assert r.status in (200, 302), r.data
        return r

    def sandbox_notifications(self, out_trade_no):
        r = self.get(self.stack.sandbox_url + "/sandbox/notifications")
        return [n for n in json.loads(r.data) if n["out_trade_no"] == out_trade_no]

    def trigger(self, scenario, out_trade_no, **options):
        r = self.http.request("POST", self.stack.sandbox_url + "/sandbox/trigger",
                              body=json.dumps({"scenario": scenario, "out_trade_no": out_trade_no, **options}),
                              headers={"Content-Type": "application/json"})
        assert r.status == 200, r.data
        return json.loads(r.data)

    def wait_delivered(self, out_trade_no, count, timeout=15.0):
        """Until `count` notifications of the order got an answer, final or not."""
        deadline = time.monotonic() + timeout
        while True:
            notes = self.sandbox_notifications(out_trade_no)
            if sum(bool(n["attempts"]) for n in notes) >= count or time.monotonic() > deadline:
                return notes
            time.sleep(0.1)


@pytest.fixture
def api(stack):
    return Api(stack)


class FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.action, self.fields = None, {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.action = attrs.get("action")
        if tag == "input" and attrs.get("type") == "hidden":
            self.fields[attrs["name"]] = attrs["value"]
