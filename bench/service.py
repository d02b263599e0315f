"""Service section: create (app product) and notify through the Chalice app object, in-process,
with API Gateway proxy events against a moto server; floors on the same server in the same run.

- create floor: one RSA-2048 signature plus one conditional put_item;
- notify floor: parse and verify the same body with plain `cryptography`, plus one
  transact_write_items with as many items as ours writes (the order update and the event).

What each timed request wrote is deleted untimed, so moto's table copies stay small (traps.md);
automatic garbage collection is off during batches and run between them.
"""
import base64
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import urllib.parse

from chalice import Chalice, Response
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from bench.timing import LambdaContext, MotoProcess, bench_table, proxy_event, summary, timed_batches
from localaws import aws_environment
from tests.support import Merchant

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE, SECRET = "bench-orders", "bench/merchant"
FORM = "application/x-www-form-urlencoded"


class Service:
    """The app in this process against a moto server in another: the requests the sections time."""

    def __init__(self):
        self.moto = MotoProcess().start()
        try:
            self._provision()
        except BaseException:
            self.moto.stop()
            raise

    def _provision(self):
        os.environ.update(aws_environment(self.moto.url))
        os.environ.update({"ORDERS_TABLE": TABLE, "ALIPAY_SECRET_ID": SECRET, "PUBLIC_BASE_URL": "https://pay.example"})
        import boto3
        self.ddb = boto3.client("dynamodb")
        bench_table(self.ddb, TABLE)
        self.merchant = Merchant()
        self.merchant.put(boto3.client("secretsmanager"), SECRET)
        import app
        self.handler = app.app
        self.headers = {**self.merchant.auth, "Content-Type": "application/json", "Host": "pay.example"}
        self._numbers = iter(range(10 ** 9))
        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # its metrics line
            self.handler(self.create_event("W0"), LambdaContext())  # warm: clients, secret, key

    def stop(self):
        self.moto.stop()

    def create_event(self, no):
        body = json.dumps({"product": "app", "subject": "bench", "total_amount": "88.80", "out_trade_no": no})
        return proxy_event("POST", "/orders", self.headers, body.encode(), "/orders")

    def delete_partition(self, state):
        no = state[0]
        items = self.ddb.query(TableName=TABLE, KeyConditionExpression="pk = :pk",
                               ExpressionAttributeValues={":pk": {"S": f"ORDER#{no}"}})["Items"]
        for item in items:
            self.ddb.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})

    def create_setup(self):
        no = f"B{next(self._numbers)}"
        return no, self.create_event(no)

    def create(self, state):
        answer = self.handler(state[1], LambdaContext())
        assert answer["statusCode"] == 201, answer

    def notify_setup(self):
        no = f"N{next(self._numbers)}"
        assert self.handler(self.create_event(no), LambdaContext())["statusCode"] == 201
        body = self.merchant.notification(no, "88.80")
        return no, proxy_event("POST", "/alipay/notify", {"Content-Type": FORM}, body, "/alipay/notify"), body

    def notify(self, state):
        answer = self.handler(state[1], LambdaContext())
        text = base64.b64decode(answer["body"]).decode() if answer.get("isBase64Encoded") else answer["body"]
        assert answer["statusCode"] == 200 and text == "success", answer

    def steps(self):
        """Ours: create (app) and notify, each with its setup and its untimed cleanup."""
        return {"create": (self.create_setup, self.create, self.delete_partition),
                "notify": (self.notify_setup, self.notify, self.delete_partition)}


def run():
    print("== service (in-process Chalice app against a moto server in its own process; floors in the same run)")
    service = Service()
    ddb, merchant = service.ddb, service.merchant

    def key(no):
        return {"pk": {"S": f"ORDER#{no}"}, "sk": {"S": "ORDER"}}

    app_key = merchant.app_key
    content = b"app_id=2021000000000001&biz_content=" + b"x" * 200

    def floor_create(state):
        app_key.sign(content, padding.PKCS1v15(), hashes.SHA256())
        ddb.put_item(TableName=TABLE, Item={**key(state[0]), "status": {"S": "WAIT_BUYER_PAY"}},
                     ConditionExpression="attribute_not_exists(pk)")

    alipay_public = merchant.alipay_key.public_key()

    def parse_and_verify(body):
        fields = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        signature = base64.b64decode(fields.pop("sign"))
        fields.pop("sign_type")
        string = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if fields[k])
        try:
            alipay_public.verify(signature, string.encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            pass

    def floor_notify(state):
        no, _, body = state
        parse_and_verify(body)
        ddb.transact_write_items(TransactItems=[
            {"Update": {"TableName": TABLE, "Key": key(no), "UpdateExpression": "SET #s = :to",
                        "ConditionExpression": "#s = :from", "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {":to": {"S": "TRADE_SUCCESS"}, ":from": {"S": "WAIT_BUYER_PAY"}}}},
            {"Put": {"TableName": TABLE, "Item": {"pk": {"S": f"ORDER#{no}"}, "sk": {"S": "EVENT#x"}},
                     "ConditionExpression": "attribute_not_exists(pk)"}}])

    # An empty Chalice route, and one that also writes what every invocation must (issue 17): a
    # JSON log line and an EMF line. Added to a floor they are the least any Chalice app can do.
    floor_app = Chalice(app_name="floor")
    log = logging.getLogger("bench_floor")
    log.setLevel(logging.INFO)  # as ours: its lines are formatted and written (bench.timing.lambda_log_handler)

    @floor_app.route("/alipay/notify", methods=["POST"], content_types=[FORM])
    def empty_notify():
        return Response("failure", status_code=400, headers={"Content-Type": "text/plain"})

    @floor_app.route("/lines", methods=["POST"], content_types=[FORM, "application/json"])
    def route_with_lines():
        log.info(json.dumps({"request_id": "bench", "function": "api_handler", "stage": "local",
                             "event": "notification", "status": 200, "outcome": "applied"}))
        print(json.dumps({"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [{
            "Namespace": "Bench", "Dimensions": [["Stage", "Function", "Outcome"]],
            "Metrics": [{"Name": "Notifications", "Unit": "Count"}]}]}, "Stage": "local", "Function": "api_handler",
            "Outcome": "applied", "Notifications": 1}, separators=(",", ":")), flush=True)  # Lambda flushes each write
        return Response("success", status_code=200, headers={"Content-Type": "text/plain"})

    def floor_route_lines(state):
        event = dict(state[1], path="/lines", resource="/lines")
        event["requestContext"] = dict(event["requestContext"], resourcePath="/lines", path="/lines")
        assert floor_app(event, LambdaContext())["statusCode"] == 200

    def tampered_setup():
        body = merchant.notification("TAMPERED", "88.80").replace(b"total_amount=88.80", b"total_amount=0.01")
        return "TAMPERED", proxy_event("POST", "/alipay/notify", {"Content-Type": FORM}, body, "/alipay/notify"), body

    def tampered(state):
        assert service.handler(state[1], LambdaContext())["statusCode"] == 400

    def floor_tampered(state):
        parse_and_verify(state[2])
        assert floor_app(state[1], LambdaContext())["statusCode"] == 400

    def nothing(state):
        return None

    ours = service.steps()
    try:
        times = timed_batches({
            "create": ours["create"],
            "create_floor": (service.create_setup, floor_create, service.delete_partition),
            "create_least": (service.create_setup, lambda state: (floor_create(state), floor_route_lines(state)),
                             service.delete_partition),
            "notify": ours["notify"],
            "notify_floor": (service.notify_setup, floor_notify, service.delete_partition),
            "notify_least": (service.notify_setup, lambda state: (floor_notify(state), floor_route_lines(state)),
                             service.delete_partition),
            "tampered": (tampered_setup, tampered, nothing),
            "tampered_floor": (tampered_setup, floor_tampered, nothing),
            "tampered_least": (tampered_setup, lambda state: (parse_and_verify(state[2]), floor_route_lines(state)),
                               nothing),
        })
    finally:
        service.stop()
    print("own time: the wall time less the time inside botocore's calls (goals, issue 17: create and notify "
          "1.5x, tampered 1.2x)")
    for name, label in (("create", "POST /orders (app) vs sign + put_item"),
                        ("notify", "POST /alipay/notify vs verify + transaction"),
                        ("tampered", "tampered notify vs verify + empty route")):
        summary(label, {"ours": times[name], "floor": times[f"{name}_floor"]})
        summary("  the floor + a Chalice route, a log and an EMF line", {"ours": times[f"{name}_least"],
                                                                        "floor": times[f"{name}_floor"]})
    cold_start()


COLD_OURS = """
import base64, json, os, time
import app
event = json.loads(os.environ["BENCH_EVENT"])
class C:
    function_name = "api_handler"; aws_request_id = "cold"; memory_limit_in_mb = 512
    def get_remaining_time_in_millis(self): return 30000
assert app.app(event, C())["statusCode"] == 201
"""

COLD_FLOOR = """
import os
import boto3
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
import json
ddb = boto3.client("dynamodb"); sm = boto3.client("secretsmanager")
secret = json.loads(sm.get_secret_value(SecretId=os.environ["ALIPAY_SECRET_ID"])["SecretString"])
key = serialization.load_pem_private_key(secret["app_private_key"].encode(), None)
key.sign(b"app_id=1&biz_content=" + b"x" * 200, padding.PKCS1v15(), hashes.SHA256())
ddb.put_item(TableName=os.environ["ORDERS_TABLE"], Item={"pk": {"S": "ORDER#" + os.environ["BENCH_NO"]},
             "sk": {"S": "ORDER"}}, ConditionExpression="attribute_not_exists(pk)")
"""


def cold_start(rounds=7):
    """A fresh process serving its first create, against the bare work a first create needs."""
    with MotoProcess() as moto:
        env = dict(os.environ, **aws_environment(moto.url))
        import boto3
        ddb = boto3.client("dynamodb", endpoint_url=moto.url)
        bench_table(ddb, TABLE)
        merchant = Merchant()
        merchant.put(boto3.client("secretsmanager", endpoint_url=moto.url), SECRET)
        times = {"ours": [], "floor": []}
        for index in range(rounds):
            for name, script in (("ours", COLD_OURS), ("floor", COLD_FLOOR)):
                no = f"C{name}{index}"
                body = json.dumps({"product": "app", "subject": "cold", "total_amount": "1.00", "out_trade_no": no})
                event = proxy_event("POST", "/orders", {**merchant.auth, "Content-Type": "application/json",
                                                        "Host": "pay.example"}, body.encode(), "/orders")
                start = time.perf_counter()
                subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True,
                               stdout=subprocess.DEVNULL,  # our EMF line, written as ever, kept out of the report
                               env=dict(env, BENCH_EVENT=json.dumps(event), BENCH_NO=no))
                times[name].append((time.perf_counter() - start) * 1000)
    ours, floor = statistics.median(times["ours"]), statistics.median(times["floor"])
    print(f"{'cold start: first create in a fresh process':<44} ours {ours:7.0f} ms | floor {floor:7.0f} ms | "
          f"ratio {ours / floor:5.2f}")
