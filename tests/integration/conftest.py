"""A moto server over HTTP for the whole session, a table and a merchant secret per test."""
import itertools
import os
import pathlib

import boto3
import pytest
from chalice.test import Client

from chalicelib import store
from localaws import MotoServer, aws_environment
from tests.integration.helpers import FakeMapi, ScriptedAlipay
from tests.support import Merchant, set_environment

ROOT = pathlib.Path(__file__).resolve().parents[2]
_counter = itertools.count()


@pytest.fixture(scope="session")
def moto():
    server = MotoServer().start()
    restore = set_environment(aws_environment(server.url))
    yield server
    server.stop()
    restore()


@pytest.fixture(scope="session")
def aws(moto):
    return {name: boto3.client(name) for name in ("dynamodb", "secretsmanager", "sqs")}


@pytest.fixture
def env(aws):
    """A fresh table and secret name for each test, so tests never share state."""
    n = next(_counter)
    values = {"ORDERS_TABLE": f"orders-{n}", "ALIPAY_SECRET_ID": f"merchant-{n}",
              # Nothing listens on port 9: no test reaches outside this machine.
              "ALIPAY_GATEWAY": "http://127.0.0.1:9/gateway.do",
              "ALIPAY_MAPI_GATEWAY": "http://127.0.0.1:9/gateway.do", "SECRET_TTL_SECONDS": "300",
              "RECONCILE_QUEUE": f"reconcile-{n}", "POLL_QUEUE": f"poll-{n}"}
    restore = set_environment(values)
    store.ensure_table(aws["dynamodb"], values["ORDERS_TABLE"])
    for queue in (values["RECONCILE_QUEUE"], values["POLL_QUEUE"]):
        aws["sqs"].create_queue(QueueName=queue)
    yield values
    restore()


@pytest.fixture
def merchant(aws, env):
    m = Merchant()
    m.put(aws["secretsmanager"], env["ALIPAY_SECRET_ID"])
    return m


@pytest.fixture
def client(env):
    with Client(__import__("app").app, stage_name="local", project_dir=str(ROOT)) as c:
        yield c


@pytest.fixture
def alipay(env, merchant):
    """A scripted, signing Alipay gateway (helpers.ScriptedAlipay) behind ALIPAY_GATEWAY."""
    fake = ScriptedAlipay(merchant)
    previous = os.environ["ALIPAY_GATEWAY"]
    os.environ["ALIPAY_GATEWAY"] = fake.url
    yield fake
    os.environ["ALIPAY_GATEWAY"] = previous
    fake.close()


@pytest.fixture
def mapi(env):
    """The legacy MAPI gateway's notify_verify (helpers.FakeMapi) behind ALIPAY_MAPI_GATEWAY."""
    fake = FakeMapi()
    previous = os.environ["ALIPAY_MAPI_GATEWAY"]
    os.environ["ALIPAY_MAPI_GATEWAY"] = fake.url
    yield fake
    os.environ["ALIPAY_MAPI_GATEWAY"] = previous
    fake.close()
