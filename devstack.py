"""The local stack: a moto server (AWS), the Alipay sandbox and `chalice local`, wired together.

`make run` runs it in the foreground; the end-to-end tests start it on free ports and stop it.
Everything is provisioned fresh: the table, an app key pair, a merchant secret whose Alipay
public key is the sandbox's, an API token; the app and the legacy partner are registered with
the sandbox. Never deployed.

Run files (logs, the sandbox's state) live outside the project, and `chalice local` runs with
`--no-autoreload` unless asked (`--reload`): chalice's auto-reload restarts the API on any file
written anywhere under the project (traps.md), which resets the connections in flight.
"""
import argparse
import hashlib
import json
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from deploy import resources
from localaws import MotoServer, aws_environment, kms_app_key

ROOT = pathlib.Path(__file__).resolve().parent
APP_ID = "2021000122600001"
SELLER_ID = "2088102177649450"
PARTNER = "2088102177640000"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port):
    """Something listens on it. SO_REUSEADDR as the servers set it: the connections a stack just
    stopped left in TIME_WAIT do not count."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def wait_until_up(url, process=None, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def http_json(url, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                     method="POST" if data is not None else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read().decode()
        return json.loads(body) if body.startswith(("{", "[")) else body


def default_run_dir():
    """Outside the project, one folder per checkout (two worktrees may run stacks side by side)."""
    if os.environ.get("RUN_DIR"):
        return pathlib.Path(os.environ["RUN_DIR"])
    state_home = pathlib.Path(os.environ.get("XDG_STATE_HOME") or pathlib.Path.home() / ".local" / "state")
    checkout = hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]
    return state_home / "chalice-alipay" / f"{ROOT.name}-{checkout}"


class Stack:
    def __init__(self, workdir, api_port=0, sandbox_port=0, moto_port=0, shop_port=0, time_factor=1.0,
                 extra_env=None, cert_mode=False, signer="local", keep_state=False, reload=False,
                 table="alipay-orders", secret_id="alipay/merchant"):
        self.workdir = pathlib.Path(workdir)
        # moto keeps its data per process, not per server: two stacks in one process (tests) need
        # their own table and secret, or the second one's keys replace the first one's.
        self.table, self.secret_id = table, secret_id
        self.keep_state = keep_state
        self.reload = reload
        self._replaced_env = {}
        self.logs = self.workdir / "logs"
        self.api_port = api_port or free_port()
        self.sandbox_port = sandbox_port or free_port()
        self.moto = MotoServer(moto_port)
        self.shop_port = shop_port or free_port()
        self._shop_server = None
        self.time_factor = time_factor
        self.extra_env = extra_env or {}
        self.cert_mode = cert_mode
        self.signer = signer  # "local": app_private_key in the secret; "kms": the key held in (moto's) KMS
        self.processes = {}
        self.token = None
        self.fulfilment = None

    @property
    def api_url(self):
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def shop_url(self):
        return f"http://127.0.0.1:{self.shop_port}"

    @property
    def sandbox_url(self):
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def sandbox_state(self):
        return self.workdir / "sandbox-state.json"

    def _spawn(self, name, command, env):
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "wb")  # this run's log only: its restarts, its errors
        self.processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
        return self.processes[name]

    def start(self):
        try:
            return self._start()
        except BaseException:  # a part that failed to come up: stop the parts that did
            self.stop()
            raise

    def _start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.keep_state:
            # The moto server starts empty: trades and notifications of a previous run would be
            # retried against orders that no longer exist.
            self.sandbox_state.unlink(missing_ok=True)
        self.moto.start()
        aws = aws_environment(self.moto.url)
        # In-process clients (the shop, tests calling the service layer) reach this moto server;
        # stop() puts back what was there, so a second stack never leaves a dead endpoint behind.
        self._replaced_env = {name: os.environ.get(name) for name in aws}
        os.environ.update(aws)
        base_env = dict(os.environ, **aws, PYTHONUNBUFFERED="1")
        sandbox = self._spawn("sandbox", [sys.executable, "-m", "sandbox", "serve", "--port", str(self.sandbox_port),
                                          "--state", str(self.sandbox_state),
                                          "--time-factor", str(self.time_factor)], base_env)
        wait_until_up(self.sandbox_url + "/sandbox/alipay_public_key", sandbox)
        self.env = self.provision(base_env)
        chalice = str(pathlib.Path(sys.executable).parent / "chalice")
        command = [chalice, "local", "--stage", "local", "--host", "127.0.0.1", "--port", str(self.api_port)]
        # With auto-reload on, a .pyc written under the project would count as a code change too.
        env = dict(self.env, PYTHONDONTWRITEBYTECODE="1") if self.reload else self.env
        api = self._spawn("chalice", command + ([] if self.reload else ["--no-autoreload"]), env)
        wait_until_up(self.api_url + "/health", api, timeout=60)
        # The reconcile and poll workers as Lambda runs them, and the scheduled pass (README).
        self._spawn("workers", [sys.executable, "sqsdrain.py"], self.env)
        self.start_order_events()
        self.start_shop()
        return self

    def start_shop(self):
        from werkzeug.serving import make_server

        from demo.shop import Shop
        shop = Shop(self.api_url, self.token)
        shop = self.fulfilment.wrap(shop) if self.fulfilment else shop
        self._shop_server = make_server("127.0.0.1", self.shop_port, shop, threaded=True)
        threading.Thread(target=self._shop_server.serve_forever, daemon=True).start()

    # ---- order events: moto triggers nothing, so the publisher runs as a process (traps.md) --------

    EVENT_BUS = "chalice-alipay"
    ORDERS_QUEUE = "chalice-alipay-orders"

    def start_order_events(self):
        """The bus, a rule delivering every order event to an SQS queue, `manage.py publish-events
        --follow` reading the table's stream, and the demo shop's fulfilment reading the queue."""
        import boto3

        from chalicelib.service import publish
        from demo.fulfilment import Fulfilment
        events = boto3.client("events", endpoint_url=self.moto.url)
        sqs = boto3.client("sqs", endpoint_url=self.moto.url)
        publish.ensure_bus(events, self.EVENT_BUS)
        self.orders_queue_url = sqs.create_queue(QueueName=self.ORDERS_QUEUE)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.orders_queue_url,
                                             AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="orders-to-queue", EventBusName=self.EVENT_BUS,
                        EventPattern=json.dumps({"source": [publish.SOURCE]}))
        events.put_targets(Rule="orders-to-queue", EventBusName=self.EVENT_BUS,
                           Targets=[{"Id": "orders-queue", "Arn": queue_arn}])
        self._spawn("publisher", [sys.executable, "manage.py", "publish-events", "--follow", "--poll", "0.3"],
                    dict(self.env, EVENT_BUS_NAME=self.EVENT_BUS))
        self.fulfilment = Fulfilment(sqs, self.orders_queue_url).start()

    def provision(self, base_env):
        """Table, secret with fresh keys, sandbox registrations; the environment for chalice local."""
        import boto3
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        from chalicelib import store
        from chalicelib.alipay import keys
        table, secret_id = self.table, self.secret_id
        store.ensure_table(boto3.client("dynamodb", endpoint_url=self.moto.url), table)
        sqs = boto3.client("sqs", endpoint_url=self.moto.url)
        for queue in ("chalice-alipay-reconcile", "chalice-alipay-poll"):
            sqs.create_queue(QueueName=queue)
        app_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.app_key = app_key
        self.token = secrets.token_urlsafe(24)
        self.md5_key = secrets.token_hex(16)
        alipay_public_key = http_json(self.sandbox_url + "/sandbox/alipay_public_key")
        secret = {
            "app_id": APP_ID, "seller_id": SELLER_ID, "sign_type": "RSA2",
            "app_private_key": app_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()).decode(),
            "alipay_public_key": alipay_public_key,
            "api_tokens": [hashlib.sha256(self.token.encode()).hexdigest()],
            "partner": PARTNER, "md5_key": self.md5_key,
        }
        app_public_key = keys.spki_base64(app_key)
        if self.signer == "kms":
            self.app_key = None  # nothing here can sign as the app: only KMS can
            secret.pop("app_private_key")
            secret["app_signer"], app_public_key = kms_app_key(self.moto.url, resources.key_alias("local"))
        sm = boto3.client("secretsmanager", endpoint_url=self.moto.url)
        try:
            sm.create_secret(Name=secret_id, SecretString=json.dumps(secret))
        except sm.exceptions.ResourceExistsException:
            sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(secret))
        registered = http_json(self.sandbox_url + "/sandbox/apps",
                               {"app_id": APP_ID, "public_key": app_public_key, "seller_id": SELLER_ID,
                                "cert_mode": self.cert_mode})
        if self.cert_mode:  # the certificate trio replaces the Alipay public key (contract, "The secret")
            del secret["alipay_public_key"]
            secret.update({name: registered[name] for name in ("app_cert", "alipay_cert", "alipay_root_cert")})
            sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(secret))
        http_json(self.sandbox_url + "/sandbox/partners", {"partner": PARTNER, "md5_key": self.md5_key})
        gateway = self.sandbox_url + "/gateway.do"
        env = dict(base_env, ORDERS_TABLE=table, ALIPAY_SECRET_ID=secret_id, ALIPAY_GATEWAY=gateway,
                   ALIPAY_MAPI_GATEWAY=gateway, PUBLIC_BASE_URL=self.api_url,
                   RETURN_REDIRECT_URL=self.shop_url + "/result", GATEWAY_READ_TIMEOUT_SECONDS="2")
        env.update(self.extra_env)  # may replace any of the above (an empty RETURN_REDIRECT_URL, say)
        return env

    def stop(self):
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._shop_server:
            self._shop_server.shutdown()
            self._shop_server.server_close()
        if self.fulfilment:
            self.fulfilment.stop()
        self.moto.stop()
        for name, value in self._replaced_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main(argv=None):
    parser = argparse.ArgumentParser(description="the whole local stack")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
    parser.add_argument("--sandbox-port", type=int, default=int(os.environ.get("SANDBOX_PORT", 8001)))
    parser.add_argument("--moto-port", type=int, default=int(os.environ.get("MOTO_PORT", 5005)))
    parser.add_argument("--shop-port", type=int, default=int(os.environ.get("SHOP_PORT", 8002)))
    parser.add_argument("--workdir", default=str(default_run_dir()), help="logs and sandbox state (RUN_DIR)")
    parser.add_argument("--time-factor", type=float, default=0.01, help="Alipay's retry schedule scaled")
    parser.add_argument("--cert-mode", action="store_true", default=os.environ.get("CERT_MODE", "") not in ("", "0"),
                        help="Alipay's certificate mode (also: make run CERT_MODE=1)")
    parser.add_argument("--signer", choices=("local", "kms"), default=os.environ.get("SIGNER", "local"),
                        help="where the app key lives: in the secret, or in (moto's) KMS; env SIGNER")
    parser.add_argument("--keep-state", action="store_true", default=bool(os.environ.get("KEEP_STATE")),
                        help="keep the sandbox's trades and notifications of the previous run (KEEP_STATE=1)")
    parser.add_argument("--reload", action="store_true", default=bool(os.environ.get("RELOAD")),
                        help="restart the API when a file under the project changes (RELOAD=1)")
    args = parser.parse_args(argv)
    if args.reload:  # a .pyc this process writes under the project later would restart the API too
        sys.dont_write_bytecode = True
    busy = [f"{port} ({name})" for name, port in (("PORT", args.port), ("SANDBOX_PORT", args.sandbox_port),
                                                  ("MOTO_PORT", args.moto_port), ("SHOP_PORT", args.shop_port))
            if port_in_use(port)]
    if busy:
        print(f"port {', '.join(busy)} in use: another stack running? Stop it, or choose other ports, e.g. "
              f"make run PORT=8100 SANDBOX_PORT=8101 MOTO_PORT=5105 SHOP_PORT=8102", file=sys.stderr)
        return 1
    stack = Stack(args.workdir, args.port, args.sandbox_port, args.moto_port, args.shop_port, args.time_factor,
                  cert_mode=args.cert_mode, signer=args.signer, keep_state=args.keep_state, reload=args.reload)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        stack.start()
        print(f"""
chalice-alipay local stack is up (logs: {stack.logs}/)
  sandbox state {"kept from the last run" if stack.keep_state else "fresh"}; API auto-reload \
{"on: any file written under the project restarts it" if stack.reload else "off: restart make run after a code change"}

  Demo shop            {stack.shop_url}/
  API (chalice local)  {stack.api_url}
  Alipay sandbox       {stack.sandbox_url}/gateway.do   notifications: {stack.sandbox_url}/sandbox/notifications.html
  AWS (moto server)    {stack.moto.url}
  Alipay signing       {"certificate mode" if stack.cert_mode else "public key mode"}
  Order events         bus {stack.EVENT_BUS} -> SQS {stack.orders_queue_url} (publisher log: {stack.logs}/publisher.log)
  API reference        {stack.api_url}/openapi.yaml
  API token            {stack.token}
  App key              {"in KMS (moto), " + resources.key_alias("local") if stack.signer == "kms" else "in the secret"}

  curl -s -X POST {stack.api_url}/orders -H 'Authorization: Bearer {stack.token}' \\
       -H 'Content-Type: application/json' -d '{{"product": "page", "subject": "Tea", "total_amount": "88.80"}}'

Ctrl-C stops everything.""", flush=True)
        while all(p.poll() is None for p in stack.processes.values()):
            time.sleep(0.5)
        print("a part of the stack exited; see the logs", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
