"""The API reference (chalicelib/openapi.yaml) says what the app does: the same routes, every
error code, and the exact input rules the service enforces."""
import itertools
import pathlib
import re

import pytest
import yaml
from chalice.test import Client
from openapi_spec_validator import validate

import app as application
from chalicelib import errors
from chalicelib.alipay.errors import InvalidAmount
from chalicelib.alipay.money import parse_amount
from chalicelib.service.create import timeout_seconds

ROOT = pathlib.Path(__file__).resolve().parents[2]
SPEC_PATH = ROOT / "chalicelib" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "patch", "options", "head"}


@pytest.fixture(scope="module")
def spec():
    return yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))


def test_the_spec_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_the_spec_names_exactly_the_apps_routes(spec):
    documented = {(path, method.upper())
                  for path, item in spec["paths"].items() for method in item if method in METHODS}
    served = {(path, method) for path, methods in application.app.routes.items() for method in methods}
    assert documented == served


def test_merchant_routes_need_the_bearer_token_and_the_others_do_not(spec):
    public = {path for path, item in spec["paths"].items() for method, op in item.items()
              if method in METHODS and op.get("security") == []}
    assert public == {"/health", "/openapi.yaml", "/alipay/notify", "/alipay/return"}
    assert spec["security"] == [{"bearer": []}]
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


def test_every_error_code_the_service_produces_is_documented(spec):
    documented = set(spec["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    produced = {cls.code for cls in vars(errors).values()
                if isinstance(cls, type) and issubclass(cls, errors.ServiceError)}
    assert produced <= documented and "internal_error" in documented


def test_orders_document_expires_at_and_refunds_document_the_pending_answer(spec):
    assert "expires_at" in spec["components"]["schemas"]["Order"]["properties"]
    refund = spec["paths"]["/orders/{out_trade_no}/refunds"]["post"]["responses"]
    assert {"200", "201", "202", "409", "422"} <= set(refund)
    assert "REFUND_PENDING" in refund["202"]["description"]


def accepts_amount(value):
    try:
        parse_amount(value)
        return True
    except InvalidAmount:
        return False


AMOUNTS = ["0", "0.0", "0.00", "0.01", "0.1", "0.10", "0.99", "1", "1.5", "01", "1.", ".5", "1.234", "-1", "1e2",
           "99999999.99", "100000000", "100000000.0", "100000000.00", "100000000.01", "100000001", " 1", "1 "]


@pytest.mark.parametrize("value", AMOUNTS)
def test_the_amount_pattern_accepts_exactly_what_the_service_accepts(spec, value):
    pattern = re.compile(spec["components"]["schemas"]["Amount"]["pattern"])
    assert bool(pattern.search(value)) == accepts_amount(value)


def test_the_timeout_express_pattern_accepts_exactly_1m_to_15d(spec):
    pattern = re.compile(spec["components"]["schemas"]["CreateOrder"]["properties"]["timeout_express"]["pattern"])
    for number, unit in itertools.product(range(0, 25000), "mhdx"):
        value = f"{number}{unit}"
        assert bool(pattern.search(value)) == (60 <= timeout_seconds(value) <= 15 * 86400), value


def test_the_api_serves_the_spec_without_a_token():
    with Client(application.app, stage_name="local", project_dir=str(ROOT)) as client:
        response = client.http.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/yaml")
    assert response.body.decode("utf-8") == SPEC_PATH.read_text(encoding="utf-8")
