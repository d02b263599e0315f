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
import gc
import json
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

from bench.timing import BotocoreMeter, bench_table, summary
from devstack import MotoServer, aws_environment
from tests.support import Merchant

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE, SECRET = "bench-orders", "bench/merchant"


class _Context:
    function_name = "api_handler"
    aws_request_id = "bench"
    memory_limit_in_mb = 512

    @staticmethod
    def get_remaining_time_in_millis():
        return 30000


def proxy_event(method, path, headers, body, resource, path_parameters=None):
    return {
        "resource": resource, "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": None,
        "multiValueQueryStringParameters": None, "pathParameters": path_parameters, "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "stage": "api", "path": path,
                           "identity": {"sourceIp": "127.0.0.1"}, "requestId": "bench"},
        "body": base64.b64encode(body).decode(), "isBase64Encoded": True,
    }


def timed_batches(steps, batches=12, per_batch=25):
    """steps: name -> (setup, timed, cleanup). Returns name -> list of µs of own time: the wall
    time less the time inside botocore's API calls (moto's cost is not ours)."""
    times = {name: [] for name in steps}
    gc.disable()
    try:
        with BotocoreMeter() as meter, open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
            for _ in range(batches):
                for name, (setup, timed, cleanup) in steps.items():
                    for _ in range(per_batch):
                        state = setup()
                        inside, start = meter.inside_ns, time.perf_counter_ns()
                        timed(state)
                        wall = time.perf_counter_ns() - start
                        times[name].append((wall - (meter.inside_ns - inside)) / 1000)
                        cleanup(state)
                    gc.collect()
    finally:
        gc.enable()
    return times


def run():
    print("== service (in-process Chalice app against a moto server; floors on the same server)")
    moto = MotoServer().start()
    os.environ.update(aws_environment(moto.url))
    os.environ.update({"ORDERS_TABLE": TABLE, "ALIPAY_SECRET_ID": SECRET, "PUBLIC_BASE_URL": "https://pay.example"})
    import boto3

    from chalicelib import store
    ddb, sm = boto3.client("dynamodb"), boto3.client("secretsmanager")
    bench_table(ddb, TABLE)
    merchant = Merchant()
    merchant.put(sm, SECRET)
    import app as application
    handler = application.app

    headers = {**merchant.auth, "Content-Type": "application/json", "Host": "pay.example"}
    counter = iter(range(10 ** 9))

    def key(no):
        return {"pk": {"S": f"ORDER#{no}"}, "sk": {"S": "ORDER"}}

    def delete_partition(no):
        items = ddb.query(TableName=TABLE, KeyConditionExpression="pk = :pk",
                          ExpressionAttributeValues={":pk": {"S": f"ORDER#{no}"}})["Items"]
        for item in items:
            ddb.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})

    # ---- create ------------------------------------------------------------------------
    def create_setup():
        no = f"B{next(counter)}"
        body = json.dumps({"product": "app", "subject": "bench", "total_amount": "88.80", "out_trade_no": no})
        return no, proxy_event("POST", "/orders", headers, body.encode(), "/orders")

    def create_timed(state):
        answer = handler(state[1], _Context())
        assert answer["statusCode"] == 201, answer

    app_key = merchant.app_key
    content = b"app_id=2021000000000001&biz_content=" + b"x" * 200

    def floor_create_timed(state):
        app_key.sign(content, padding.PKCS1v15(), hashes.SHA256())
        ddb.put_item(TableName=TABLE, Item={**key(state[0]), "status": {"S": "WAIT_BUYER_PAY"}},
                     ConditionExpression="attribute_not_exists(pk)")

    def create_cleanup(state):
        delete_partition(state[0])

    # ---- notify ------------------------------------------------------------------------
    def notify_setup():
        no = f"N{next(counter)}"
        created = handler(create_setup_for(no), _Context())
        assert created["statusCode"] == 201
        body = merchant.notification(no, "88.80")
        return no, proxy_event("POST", "/alipay/notify", {"Content-Type": "application/x-www-form-urlencoded"},
                               body, "/alipay/notify"), body

    def create_setup_for(no):
        body = json.dumps({"product": "app", "subject": "bench", "total_amount": "88.80", "out_trade_no": no})
        return proxy_event("POST", "/orders", headers, body.encode(), "/orders")

    def notify_timed(state):
        answer = handler(state[1], _Context())
        assert answer["statusCode"] == 200 and base64.b64decode(answer["body"]) == b"success" \
            if answer.get("isBase64Encoded") else answer["body"] == "success", answer

    alipay_public = merchant.alipay_key.public_key()

    def floor_notify_timed(state):
        no, _, body = state
        fields = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        signature = base64.b64decode(fields.pop("sign"))
        fields.pop("sign_type")
        string = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if fields[k])
        alipay_public.verify(signature, string.encode(), padding.PKCS1v15(), hashes.SHA256())
        ddb.transact_write_items(TransactItems=[
            {"Update": {"TableName": TABLE, "Key": key(no), "UpdateExpression": "SET #s = :to",
                        "ConditionExpression": "#s = :from", "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {":to": {"S": "TRADE_SUCCESS"}, ":from": {"S": "WAIT_BUYER_PAY"}}}},
            {"Put": {"TableName": TABLE, "Item": {"pk": {"S": f"ORDER#{no}"}, "sk": {"S": "EVENT#x"}},
                     "ConditionExpression": "attribute_not_exists(pk)"}}])

    def notify_cleanup(state):
        delete_partition(state[0])

    # ---- a tampered notification, refused ----------------------------------------------------
    floor_app = Chalice(app_name="floor")

    @floor_app.route("/alipay/notify", methods=["POST"], content_types=["application/x-www-form-urlencoded"])
    def empty_notify():
        return Response("failure", status_code=400, headers={"Content-Type": "text/plain"})

    def tampered_setup():
        body = merchant.notification("TAMPERED", "88.80").replace(b"total_amount=88.80", b"total_amount=0.01")
        return "TAMPERED", proxy_event("POST", "/alipay/notify", {"Content-Type": "application/x-www-form-urlencoded"},
                                       body, "/alipay/notify"), body

    def tampered_timed(state):
        assert handler(state[1], _Context())["statusCode"] == 400

    def floor_tampered_timed(state):
        fields = dict(urllib.parse.parse_qsl(state[2].decode(), keep_blank_values=True))
        signature = base64.b64decode(fields.pop("sign"))
        fields.pop("sign_type")
        string = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if fields[k])
        try:
            alipay_public.verify(signature, string.encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            pass
        assert floor_app(state[1], _Context())["statusCode"] == 400

    handler(create_setup()[1], _Context())  # warm: clients, secret, key
    times = timed_batches({
        "create": (create_setup, create_timed, create_cleanup),
        "create_floor": (create_setup, floor_create_timed, create_cleanup),
        "notify": (notify_setup, notify_timed, notify_cleanup),
        "notify_floor": (notify_setup, floor_notify_timed, notify_cleanup),
        "tampered": (tampered_setup, tampered_timed, lambda state: None),
        "tampered_floor": (tampered_setup, floor_tampered_timed, lambda state: None),
    })
    moto.stop()
    print("own time: the wall time less the time inside botocore's calls (goals: create and notify 1.5x, "
          "tampered 1.2x)")
    summary("POST /orders (app) vs sign + put_item", {"ours": times["create"], "floor": times["create_floor"]})
    summary("POST /alipay/notify vs verify + transaction", {"ours": times["notify"], "floor": times["notify_floor"]})
    summary("tampered notify vs verify + empty route", {"ours": times["tampered"], "floor": times["tampered_floor"]})
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
    moto = MotoServer().start()
    env = dict(os.environ, **aws_environment(moto.url))
    import boto3

    from chalicelib import store
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
                           env=dict(env, BENCH_EVENT=json.dumps(event), BENCH_NO=no))
            times[name].append((time.perf_counter() - start) * 1000)
    moto.stop()
    ours, floor = statistics.median(times["ours"]), statistics.median(times["floor"])
    print(f"{'cold start: first create in a fresh process':<44} ours {ours:7.0f} ms | floor {floor:7.0f} ms | "
          f"ratio {ours / floor:5.2f}")
