"""`make run` from a fresh clone, used as a person uses it: it comes up on the printed URLs, takes
a dozen purchases and over a hundred requests without one reset connection or API restart,
starts with fresh sandbox state unless asked to keep it, writes nothing into the project and
stops cleanly."""
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import urllib3

from devstack import free_port, port_in_use
from tests.e2e.conftest import FormParser
from tests.e2e.stacks import ROOT


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    path = tmp_path_factory.mktemp("clone") / "chalice-alipay"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(path)], check=True)
    return path


class MakeRun:
    """`make run` in a clone, on free ports, its run files in `run_dir`."""

    def __init__(self, clone, run_dir, **env):
        self.clone, self.run_dir = clone, run_dir
        self.ports = {name: free_port() for name in ("PORT", "SANDBOX_PORT", "MOTO_PORT", "SHOP_PORT")}
        self.env = dict(os.environ, RUN_DIR=str(run_dir), **{k: str(v) for k, v in self.ports.items()}, **env)

    def __enter__(self):
        # The project's own virtualenv stands in for the install step, which `make test` already proved.
        self.process = subprocess.Popen(["make", "run", f"VENV={ROOT / '.venv'}"], cwd=self.clone, env=self.env,
                                        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        output, deadline = [], time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        self.banner = "".join(output)
        if "Ctrl-C stops everything" not in self.banner:
            self.__exit__()
            pytest.fail(self.banner)
        urls = dict(re.findall(r"^\s+(Demo shop|API \(chalice local\)|Alipay sandbox)\s+(\S+)", self.banner, re.M))
        self.api, self.shop = urls["API (chalice local)"], urls["Demo shop"].rstrip("/")
        self.sandbox = urls["Alipay sandbox"].replace("/gateway.do", "")
        self.token = re.search(r"API token\s+(\S+)", self.banner).group(1)
        return self

    def __exit__(self, *exc):
        os.killpg(self.process.pid, signal.SIGINT)
        self.process.wait(timeout=30)

    def api_starts(self):
        return (self.run_dir / "logs" / "chalice.log").read_text().count("Serving on http")

    def api_processes(self):
        """The pids serving the API: with auto-reload a restart is a new worker pid, whatever the log says."""
        pids = set()
        for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().split(b"\0")
            except OSError:  # the process ended while we looked
                continue
            if b"local" in args and str(self.ports["PORT"]).encode() in args:
                pids.add(int(cmdline.parent.name))
        return pids


class Client:
    """A browser and a merchant backend in one: every request counted, every failure kept.
    No retries, so a connection the server reset shows as an error and is not papered over."""

    def __init__(self, run):
        self.run = run
        self.http = urllib3.PoolManager(maxsize=8, retries=False, timeout=urllib3.Timeout(connect=5, read=20))
        self.auth = {"Authorization": f"Bearer {run.token}"}
        self.lock = threading.Lock()
        self.requests, self.connection_errors, self.server_errors = 0, [], []

    def request(self, method, url, **kw):
        with self.lock:
            self.requests += 1
        try:
            response = self.http.request(method, url, redirect=False, **kw)
        except urllib3.exceptions.HTTPError as error:  # reset, refused, closed without an answer
            with self.lock:
                self.connection_errors.append(f"{method} {url}: {error!r}")
            raise
        if response.status >= 500:
            with self.lock:
                self.server_errors.append(f"{method} {url}: {response.status} {response.data[:200]!r}")
        return response

    def api_json(self, method, path, body=None):
        response = self.request(method, self.run.api + path, body=json.dumps(body) if body is not None else None,
                                headers={**self.auth, "Content-Type": "application/json"})
        return response.status, json.loads(response.data)

    def purchase(self, item, channel):
        """What a buyer's browser does: shop, cashier, pay, back through the API to the result page."""
        assert self.request("GET", self.run.shop + "/").status == 200
        buy = self.request("POST", self.run.shop + "/buy", fields={"item": item, "channel": channel},
                           encode_multipart=False)
        assert buy.status == 200, buy.data
        page = buy.data.decode()
        no = re.search(r'id="out_trade_no"[^>]*>([A-Za-z0-9_]+)<', page).group(1)
        form = FormParser()
        form.feed(page)
        to_cashier = self.request("POST", form.action, fields=form.fields, encode_multipart=False)
        assert to_cashier.status == 302, to_cashier.data
        cashier = self.run.sandbox + to_cashier.headers["Location"]
        assert self.request("GET", cashier).status == 200
        back = self.request("POST", cashier + "/pay")
        assert back.status == 302 and back.headers["Location"].startswith(self.run.api + "/alipay/return?")
        to_result = self.request("GET", back.headers["Location"])
        assert to_result.status == 302 and to_result.headers["Location"].startswith(self.run.shop + "/result?")
        assert self.request("GET", to_result.headers["Location"]).status == 200
        deadline = time.monotonic() + 30
        while True:  # the result page's own polling
            order = json.loads(self.request("GET", f"{self.run.shop}/api/orders/{no}").data)
            if order["status"] != "WAIT_BUYER_PAY" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert order["status"] == "TRADE_SUCCESS", order
        return no


ITEMS = ["tea", "cup", "fan"]


def test_make_run_takes_a_dozen_purchases_and_a_hundred_requests_without_a_reset_or_restart(clone, tmp_path):
    with MakeRun(clone, tmp_path / "run") as run:
        serving = run.api_processes()
        client = Client(run)
        assert client.api_json("GET", "/orders/NOPE")[0] == 404  # the printed token works
        bought, failures = [], []

        def shopper(index):
            try:
                for n in range(4):
                    bought.append(client.purchase(ITEMS[(index + n) % 3], ["page", "wap"][n % 2]))
            except Exception as error:  # noqa: BLE001  reported below, with the counts
                failures.append(repr(error))

        shoppers = [threading.Thread(target=shopper, args=(i,)) for i in range(3)]
        for thread in shoppers:
            thread.start()
        while any(thread.is_alive() for thread in shoppers):  # a person reloading pages meanwhile
            assert client.request("GET", run.api + "/health").status == 200
            time.sleep(0.05)
        for thread in shoppers:
            thread.join()
        assert failures == [] and len(bought) == 12
        for no in bought[:3]:  # a refund each, as the README's curl does it
            status, answer = client.api_json("POST", f"/orders/{no}/refunds", {"refund_amount": "0.01"})
            assert status in (201, 202), answer
        for no in bought:  # every notification acknowledged at its first delivery, not on Alipay's retries
            notes = json.loads(client.request("GET", run.sandbox + "/sandbox/notifications").data)
            first_answers = [n["attempts"][0]["body"] for n in notes if n["out_trade_no"] == no and n["attempts"]]
            assert first_answers and set(first_answers) == {"success"}, first_answers
        for no in bought:  # the merchant's backend reading what happened, as a person clicks around
            order = client.api_json("GET", f"/orders/{no}")[1]
            refunded_in_full = order["refunded_amount"] == order["total_amount"]  # 0.01 of the 0.01 fan
            assert order["status"] == ("TRADE_CLOSED" if refunded_in_full else "TRADE_SUCCESS"), order
            assert client.api_json("GET", f"/orders/{no}/events")[0] == 200
            assert client.request("GET", run.api + "/openapi.yaml").status == 200
            assert client.request("GET", run.shop + "/").status == 200
            assert client.request("GET", f"{run.shop}/result?out_trade_no={no}").status == 200
            assert client.request("GET", f"{run.shop}/api/orders/{no}").status == 200
        assert client.requests >= 150  # each purchase is 8 or more of them
        print(f"make run: {client.requests} requests, {len(bought)} purchases, "
              f"{len(client.connection_errors)} connection errors, {run.api_starts() - 1} API restarts")
        assert client.connection_errors == [] and client.server_errors == []
        assert run.api_starts() == 1 and run.api_processes() == serving and len(serving) == 1
        assert (run.run_dir / "logs" / "sandbox.log").exists()
    untracked = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=clone,
                               capture_output=True, text=True).stdout.splitlines()
    assert [line for line in untracked if "__pycache__" not in line] == []  # nothing written in the project
    time.sleep(0.5)
    assert not any(port_in_use(port) for port in run.ports.values()), run.ports


def open_trade(run):
    """A trade at the sandbox: an order whose payment page the buyer opened."""
    client = Client(run)
    status, order = client.api_json("POST", "/orders", {"product": "page", "subject": "Tea", "total_amount": "1.00"})
    assert status == 201
    location = client.request("GET", order["payment"]["url"]).headers["Location"]
    assert client.request("GET", run.sandbox + location).status == 200
    return client


def sandbox_trades(client):
    return json.loads(client.request("GET", client.run.sandbox + "/sandbox/trades").data)


def test_each_make_run_starts_with_fresh_sandbox_state_unless_asked_to_keep_it(clone, tmp_path):
    run_dir = tmp_path / "run"
    with MakeRun(clone, run_dir) as run:
        assert "sandbox state fresh" in run.banner
        assert len(sandbox_trades(open_trade(run))) == 1
    with MakeRun(clone, run_dir, KEEP_STATE="1") as run:
        assert "sandbox state kept" in run.banner
        assert len(sandbox_trades(Client(run))) == 1
    with MakeRun(clone, run_dir) as run:
        assert sandbox_trades(Client(run)) == {}


def test_with_reload_only_a_code_change_restarts_the_api(clone, tmp_path):
    with MakeRun(clone, tmp_path / "run", RELOAD="1") as run:
        assert "auto-reload on" in run.banner
        serving = run.api_processes()
        client = Client(run)
        for n in range(2):  # logs and sandbox state are written meanwhile, outside the project
            client.purchase(ITEMS[n], "page")
        assert run.api_processes() == serving and client.connection_errors == []
        (clone / "app.py").touch()  # an edit: the file's time is what chalice's watcher compares
        deadline = time.monotonic() + 60
        while run.api_processes() == serving and time.monotonic() < deadline:
            time.sleep(0.2)
        assert run.api_processes() != serving
        assert wait_for_health(client), "the API did not come back after the edit"
        client.purchase(ITEMS[2], "page")


def wait_for_health(client, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if client.http.request("GET", client.run.api + "/health").status == 200:
                return True
        except urllib3.exceptions.HTTPError:
            time.sleep(0.2)
    return False


def test_a_port_already_taken_is_named_with_its_setting_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "devstack.py", "--moto-port", str(port), "--port", str(free_port()),
                               "--sandbox-port", str(free_port()), "--shop-port", str(free_port()),
                               "--workdir", str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"port {port} (MOTO_PORT) in use" in done.stderr and "MOTO_PORT=" in done.stderr
    assert not (tmp_path / "run").exists()  # nothing was started
