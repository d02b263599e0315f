"""A moto server over HTTP for the whole session, a table and a merchant secret per test."""
import itertools
import pathlib

import boto3
import pytest
from chalice.test import Client

from chalicelib import store
from devstack import MotoServer, aws_environment
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
    return {"dynamodb": boto3.client("dynamodb"), "secretsmanager": boto3.client("secretsmanager")}


@pytest.fixture
def env(aws):
    """A fresh table and secret name for each test, so tests never share state."""
    n = next(_counter)
    values = {"ORDERS_TABLE": f"orders-{n}", "ALIPAY_SECRET_ID": f"merchant-{n}",
              # Nothing listens on port 9: no test reaches outside this machine.
              "ALIPAY_GATEWAY": "http://127.0.0.1:9/gateway.do",
              "ALIPAY_MAPI_GATEWAY": "http://127.0.0.1:9/gateway.do", "SECRET_TTL_SECONDS": "300"}
    restore = set_environment(values)
    store.ensure_table(aws["dynamodb"], values["ORDERS_TABLE"])
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
