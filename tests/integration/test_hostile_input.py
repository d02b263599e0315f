"""Every input gets a clean answer (issue "Every input gets a clean answer"): no 500 from our code,
no 503 that can never succeed, nothing smuggled to Alipay. One regression test per lettered
finding, then a property-based fuzz of every route through the Chalice app over the moto server."""
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from chalicelib.alipay import gateway
from chalicelib.alipay.errors import AlipayError
from tests.integration.helpers import create_order, get_order, notify

JSON = {"Content-Type": "application/json"}
DEEP = "[" * 1000 + "]" * 1000


def post(client, merchant, path, raw, **headers):
    r = client.http.post(path, headers={**merchant.auth, **JSON, **headers}, body=raw)
    return r.status_code, json.loads(r.body)


def assert_our_400(answer, field):
    assert answer["error"]["code"] == "invalid_request" and answer["error"]["field"] == field, answer


@pytest.fixture
def order(client, merchant):
    return create_order(client, merchant, total_amount="20.00")


# ---- the lettered findings ---------------------------------------------------------------------

def test_a_lone_surrogate_in_any_order_field_is_a_400_naming_it(client, merchant, aws, env):
    for name in ("subject", "body", "passback_params", "out_trade_no"):
        raw = json.dumps({"product": "page", "subject": "s", "total_amount": "1.00", name: "x\ud800"})
        status, answer = post(client, merchant, "/orders", raw)
        assert status == 400, answer
        assert_our_400(answer, name)
    assert aws["dynamodb"].scan(TableName=env["ORDERS_TABLE"])["Count"] == 0


@pytest.mark.parametrize("path", ["/orders", "/orders/{no}/refunds", "/orders/{no}/app-result"])
def test_b_json_nested_1000_deep_is_a_400(client, merchant, order, path):
    status, answer = post(client, merchant, path.format(no=order["out_trade_no"]), '{"product":' + DEEP + "}")
    assert status == 400
    assert_our_400(answer, "body")


def test_c_a_lone_surrogate_in_a_refund_reason_reserves_nothing(client, merchant, order):
    no = order["out_trade_no"]
    notify(client, merchant.notification(no, "20.00"))
    status, answer = post(client, merchant, f"/orders/{no}/refunds",
                          json.dumps({"refund_amount": "1.00", "reason": "\ud800"}))
    assert status == 400
    assert_our_400(answer, "reason")
    assert get_order(client, merchant, no)[1]["refunds"] == []


@pytest.mark.parametrize("result", [
    '{"alipay_\\q":1,"alipay_trade_app_pay_response":{},"sign":"x"}',  # D: an invalid escape in a key
    '{"a\x01":1,"alipay_trade_app_pay_response":{},"sign":"x"}',        # D: a raw control character
    '{"alipay_trade_app_pay_response":{},"sign":"\\q"}',                 # E
    '{"alipay_trade_app_pay_response":' + DEEP + "}",                    # G: deep, no sign
], ids=["D-escape", "D-control", "E", "G"])
def test_d_e_g_malformed_app_results_are_unverified_not_500(client, merchant, order, result):
    status, answer = post(client, merchant, f"/orders/{order['out_trade_no']}/app-result",
                          json.dumps({"resultStatus": "9000", "result": result}))
    assert status == 200 and answer["verified"] is False and answer["reason"].startswith("invalid"), answer


def test_f_a_lone_surrogate_as_the_response_node(client, merchant, order):
    result = '{"alipay_trade_app_pay_response":"\ud800","sign":"eA=="}'
    status, answer = post(client, merchant, f"/orders/{order['out_trade_no']}/app-result",
                          json.dumps({"resultStatus": "9000", "result": result}))
    assert status == 400
    assert_our_400(answer, "result")
    # And the parser itself, handed such text: an untrusted answer, never an escaping exception.
    with pytest.raises(AlipayError):
        gateway.verify_response(result, "alipay.trade.app.pay", [merchant.alipay_key.public_key()])


@pytest.mark.parametrize("field,value", [("out_trade_no", "nl_test\n"), ("total_amount", "1.00\n"),
                                         ("timeout_express", "30m\n"), ("subject", "line\nbreak")])
def test_a_trailing_newline_is_never_accepted(client, merchant, field, value):
    body = {"product": "page", "subject": "s", "total_amount": "1.00", field: value}
    status, answer = post(client, merchant, "/orders", json.dumps(body))
    assert status == 400
    assert_our_400(answer, field)


def test_a_verified_notification_for_an_impossible_out_trade_no_is_not_a_503(client, merchant):
    body = merchant.notification("X" * 3000, "1.00")
    assert notify(client, body)[:2] == (422, "failure")


def test_an_empty_json_key_names_the_body(client, merchant):
    status, answer = post(client, merchant, "/orders", json.dumps({"": 1, "product": "page"}))
    assert status == 400
    assert_our_400(answer, "body")


def test_an_invalid_return_names_what_failed(client, merchant):
    r = client.http.get("/alipay/return?out_trade_no=X&sign=abc&sign_type=RSA2")
    assert r.status_code == 400 and json.loads(r.body)["error"]["field"] == "sign"


def test_an_unexpected_exception_is_our_500_with_a_request_id(client, merchant, monkeypatch):
    from chalicelib.service import lifecycle, notifications
    monkeypatch.setattr(lifecycle, "get_order", lambda ctx, no: 1 / 0)
    r = client.http.get("/orders/ANY", headers=merchant.auth)
    error = json.loads(r.body)["error"]
    assert r.status_code == 500 and error["code"] == "internal_error" and error["request_id"]
    assert "ZeroDivision" not in r.body.decode()
    monkeypatch.setattr(notifications, "handle", lambda ctx, raw: 1 / 0)
    status, text, content_type = notify(client, b"a=b")
    assert (status, text) == (500, "failure") and content_type.startswith("text/plain")


# ---- the fuzz ------------------------------------------------------------------------------------

SURROGATES = st.sampled_from(["\ud800", "\udfff", "a\udc00b"])
TEXT = st.one_of(st.text(max_size=40), SURROGATES, st.text(alphabet="\x00\n\r\t\x7f%&=+\\\"", max_size=10),
                 st.just("x" * 5000), st.sampled_from(["1.00", "0.01", "1e3", "-1", "NaN", "1.001", "30m", "16d"]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                      max_leaves=8)
KEYS = st.sampled_from(["product", "subject", "total_amount", "out_trade_no", "timeout_express", "body",
                        "passback_params", "quit_url", "refund_amount", "out_request_no", "reason", "result",
                        "resultStatus", ""])
BODIES = st.one_of(
    st.dictionaries(KEYS, VALUES, max_size=6).map(lambda d: json.dumps(d).encode()),
    st.builds(lambda depth: ("[" * depth + "]" * depth).encode(), st.integers(10, 3000)),
    st.binary(max_size=200),
    st.sampled_from([b'{"subject":"\\ud800"}', b'{"product":"page","subject":"\xff"}', b"\xef\xbb\xbf{}"]),
)
ROUTES = st.sampled_from(["/orders", "/orders/{no}/refunds", "/orders/{no}/close", "/orders/{no}/sync",
                          "/orders/{no}/app-result"])
PATH_IDS = st.one_of(st.just("{no}"), st.text(alphabet="abcXYZ019_-.%", min_size=1, max_size=80),
                     st.just("A" * 3000))
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture
def stage(client, merchant, env, alipay):
    """A paid order and a waiting one, a scripted Alipay behind the gateway routes."""
    paid = create_order(client, merchant, total_amount="50.00")["out_trade_no"]
    notify(client, merchant.notification(paid, "50.00"))
    waiting = create_order(client, merchant, total_amount="5.00")["out_trade_no"]
    return {"paid": paid, "waiting": waiting}


def table_state(aws, env):
    return sorted(json.dumps(item, sort_keys=True) for item in aws["dynamodb"].scan(TableName=env["ORDERS_TABLE"])["Items"])


def check(status, body_text, content_type):
    assert status < 500, (status, body_text[:300])
    if status >= 400 and status not in (403, 415):  # 403/415: Chalice's own answers keep their shape
        if content_type.startswith("application/json"):
            error = json.loads(body_text)["error"]
            assert set(error) >= {"code", "message"} and (status != 400 or error.get("field") is not None), error
        else:
            assert body_text == "failure"


def test_fuzz_the_merchant_routes(client, merchant, stage, aws, env):
    @FUZZ
    @given(ROUTES, st.sampled_from(["paid", "waiting"]), PATH_IDS, BODIES,
           st.one_of(st.none(), TEXT.filter(lambda k: k.isascii())))
    def fuzz(route, which, path_id, raw, key):
        path = route.format(no=path_id.format(no=stage[which]))
        headers = {**merchant.auth, **JSON, **({"Idempotency-Key": key} if key is not None else {})}
        before = table_state(aws, env)
        r = client.http.post(path, headers=headers, body=raw)
        check(r.status_code, r.body.decode("utf-8", "replace"), r.headers.get("Content-Type", ""))
        if r.status_code >= 400:
            assert table_state(aws, env) == before, (path, raw[:200], r.body[:200])
    fuzz()


def test_fuzz_the_alipay_routes_signed_and_unsigned(client, merchant, stage, aws, env):
    fields = st.dictionaries(st.sampled_from(["out_trade_no", "trade_status", "total_amount", "notify_id", "app_id",
                                              "refund_fee", "out_biz_no", "seller_id", "gmt_payment", "charset",
                                              "notify_time", "x"]), TEXT.filter(lambda t: t.isprintable()),
                             max_size=8)

    @FUZZ
    @given(fields, st.booleans(), st.sampled_from(["paid", "waiting", None]), st.binary(max_size=120))
    def fuzz(extra, signed, which, raw):
        before = table_state(aws, env)
        if signed:
            base = merchant.notification_fields(stage[which] if which else "NOPE",
                                                "5.00" if which == "waiting" else "50.00")
            try:
                body = merchant.sign_notification(dict(base, **{k: v for k, v in extra.items() if v}))
            except (UnicodeEncodeError, LookupError):
                body = raw
        else:
            body = raw
        status, text, content_type = notify(client, body)
        check(status, text, content_type)
        if status >= 400:  # a verified contradiction (422) adds its anomaly event, and nothing else
            added = set(table_state(aws, env)) - set(before)
            assert all('"EVENT#anomaly#' in item for item in added) and (status == 422 or not added), added
            assert set(before) <= set(table_state(aws, env))
        query = "&".join(f"{k}={v}" for k, v in extra.items() if "&" not in k + v and "#" not in k + v)
        r = client.http.get("/alipay/return?" + query)
        check(r.status_code, r.body.decode("utf-8", "replace"), r.headers.get("Content-Type", ""))
    fuzz()
