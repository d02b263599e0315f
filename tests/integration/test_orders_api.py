"""POST /orders, GET /orders/{no}, /events, GET /alipay/return, the notify Lambda, auth."""
import base64
import hashlib
import json
import os
from urllib.parse import parse_qsl, urlencode, urlparse

import pytest

from chalicelib.alipay import signing
from chalicelib.alipay.errors import InvalidSignature
from tests.integration.helpers import create_order, events, get_order, notify

JSON = {"Content-Type": "application/json", "Host": "pay.shop.test"}


def post_order(client, merchant, body, **headers):
    r = client.http.post("/orders", headers={**merchant.auth, **JSON, **headers}, body=json.dumps(body))
    return r.status_code, json.loads(r.body)


def verify_request(merchant, params):
    signing.verify_params(params, [merchant.app_key.public_key()], "RSA2", excluded=signing.REQUEST_EXCLUDED)


@pytest.mark.parametrize("product,method", [("page", "alipay.trade.page.pay"), ("wap", "alipay.trade.wap.pay")])
def test_page_and_wap_urls_verify_with_the_app_public_key(client, merchant, product, method):
    order = create_order(client, merchant, product=product, total_amount="88.8", quit_url="https://shop/quit")
    assert order["status"] == "WAIT_BUYER_PAY" and order["total_amount"] == "88.80"
    assert order["refunded_amount"] == "0.00" and order["created_at"].endswith("Z")
    params = dict(parse_qsl(urlparse(order["payment"]["url"]).query, keep_blank_values=True))
    assert params["method"] == method and params["app_id"] == merchant.app_id
    verify_request(merchant, params)
    biz = json.loads(params["biz_content"])
    assert biz["total_amount"] == "88.80" and biz["timeout_express"] == "30m"
    assert ("quit_url" in biz) is (product == "wap")
    assert params["notify_url"] == "http://pay.shop.test/alipay/notify"
    assert params["return_url"] == "http://pay.shop.test/alipay/return"
    assert 'name="sign"' in order["payment"]["form"]
    with pytest.raises(InvalidSignature):
        verify_request(merchant, dict(params, biz_content=params["biz_content"].replace("88.80", "0.01")))


def test_app_order_string_verifies(client, merchant):
    order = create_order(client, merchant, product="app", total_amount="1.00")
    params = dict(parse_qsl(order["payment"]["order_string"], keep_blank_values=True))
    assert params["method"] == "alipay.trade.app.pay" and "return_url" not in params
    verify_request(merchant, params)


def test_legacy_url_verifies_with_md5(client, merchant):
    order = create_order(client, merchant, product="legacy", total_amount="2.50")
    params = dict(parse_qsl(urlparse(order["payment"]["url"]).query, keep_blank_values=True))
    assert params["service"] == "create_direct_pay_by_user" and params["total_fee"] == "2.50"
    signing.md5_verify(params, merchant.md5_key)


def test_notify_url_setting_is_used_verbatim(client, merchant):
    os.environ["NOTIFY_URL"] = "https://abc.lambda-url.us-east-1.on.aws/"
    try:
        order = create_order(client, merchant, product="app")
    finally:
        del os.environ["NOTIFY_URL"]
    params = dict(parse_qsl(order["payment"]["order_string"]))
    assert params["notify_url"] == "https://abc.lambda-url.us-east-1.on.aws/"


def test_replay_with_same_out_trade_no_returns_200_and_signs_afresh(client, merchant):
    body = {"product": "page", "subject": "s", "total_amount": "5.00", "out_trade_no": "SAME_1"}
    first = post_order(client, merchant, body)
    second = post_order(client, merchant, body)
    assert (first[0], second[0]) == (201, 200)
    assert second[1]["out_trade_no"] == "SAME_1" and second[1]["created_at"] == first[1]["created_at"]
    verify_request(merchant, dict(parse_qsl(urlparse(second[1]["payment"]["url"]).query)))


def test_same_out_trade_no_different_request_is_409_and_keeps_the_first(client, merchant):
    body = {"product": "page", "subject": "s", "total_amount": "5.00", "out_trade_no": "SAME_2"}
    post_order(client, merchant, body)
    status, answer = post_order(client, merchant, dict(body, total_amount="6.00"))
    assert status == 409 and answer["error"]["code"] == "idempotency_conflict"
    assert get_order(client, merchant, "SAME_2")[1]["total_amount"] == "5.00"


def test_idempotency_key_replays_and_conflicts(client, merchant):
    body = {"product": "app", "subject": "s", "total_amount": "7.00"}
    first = post_order(client, merchant, body, **{"Idempotency-Key": "key-1"})
    again = post_order(client, merchant, body, **{"Idempotency-Key": "key-1"})
    assert (first[0], again[0]) == (201, 200) and first[1]["out_trade_no"] == again[1]["out_trade_no"]
    status, answer = post_order(client, merchant, dict(body, total_amount="8.00"), **{"Idempotency-Key": "key-1"})
    assert status == 409 and answer["error"]["code"] == "idempotency_conflict"
    other = post_order(client, merchant, body, **{"Idempotency-Key": "key-2"})
    assert other[0] == 201 and other[1]["out_trade_no"] != first[1]["out_trade_no"]


@pytest.mark.parametrize("field,value", [
    ("product", "card"), ("subject", ""), ("subject", "x" * 257), ("total_amount", 88.8), ("total_amount", "88.888"),
    ("total_amount", "0.00"), ("total_amount", "100000000.01"), ("out_trade_no", "has-dash"),
    ("out_trade_no", "x" * 65), ("timeout_express", "16d"), ("timeout_express", "0m"), ("timeout_express", "30s"),
    ("quit_url", "javascript:alert(1)"), ("body", "x" * 129), ("surprise", "1"),
])
def test_invalid_fields_are_400_naming_the_field_and_store_nothing(client, merchant, aws, env, field, value):
    body = {"product": "page", "subject": "s", "total_amount": "1.00", field: value}
    status, answer = post_order(client, merchant, body)
    assert status == 400 and answer["error"]["code"] == "invalid_request" and answer["error"]["field"] == field
    assert aws["dynamodb"].scan(TableName=env["ORDERS_TABLE"])["Items"] == []


def test_huge_body_is_400_and_stores_nothing(client, merchant, aws, env):
    body = json.dumps({"product": "page", "subject": "s", "total_amount": "1.00", "body": "x" * 70000})
    r = client.http.post("/orders", headers={**merchant.auth, **JSON}, body=body)
    assert r.status_code == 400 and json.loads(r.body)["error"]["field"] == "body"
    assert aws["dynamodb"].scan(TableName=env["ORDERS_TABLE"])["Items"] == []


def test_malformed_json_and_bad_idempotency_key_are_400(client, merchant):
    r = client.http.post("/orders", headers={**merchant.auth, **JSON}, body="{not json")
    assert r.status_code == 400 and json.loads(r.body)["error"]["field"] == "body"
    status, answer = post_order(client, merchant, {"product": "page", "subject": "s", "total_amount": "1.00"},
                                **{"Idempotency-Key": "x" * 65})
    assert status == 400 and answer["error"]["field"] == "Idempotency-Key"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
def test_missing_or_wrong_token_is_401(client, merchant, headers):
    r = client.http.post("/orders", headers={**headers, **JSON},
                         body=json.dumps({"product": "page", "subject": "s", "total_amount": "1.00"}))
    assert r.status_code == 401 and json.loads(r.body)["error"]["code"] == "unauthorized"
    for path in ("/orders/X1", "/orders/X1/events"):
        assert client.http.get(path, headers=headers).status_code == 401


def test_unknown_order_is_404(client, merchant):
    for path in ("/orders/NOPE", "/orders/NOPE/events", "/orders/bad-chars/events"):
        r = client.http.get(path, headers=merchant.auth)
        assert r.status_code == 404 and json.loads(r.body)["error"]["code"] == "not_found"


def test_health_touches_nothing(client):
    r = client.http.get("/health")
    assert r.status_code == 200 and json.loads(r.body) == {"ok": True}


def test_events_carry_the_actor(client, merchant):
    order = create_order(client, merchant)
    trail = events(client, merchant, order["out_trade_no"])
    assert trail[0]["type"] == "created" and trail[0]["source"] == "api"
    assert trail[0]["actor"] == hashlib.sha256(merchant.token.encode()).hexdigest()[:8]


# ---- return ------------------------------------------------------------------------------

def _return(client, params):
    return client.http.get("/alipay/return?" + urlencode(params))


def test_valid_return_shows_the_order_and_never_marks_it_paid(client, merchant):
    order = create_order(client, merchant, total_amount="88.80")
    r = _return(client, merchant.return_query(order["out_trade_no"], "88.80"))
    assert r.status_code == 200 and b"WAIT_BUYER_PAY" in r.body and r.headers["Content-Type"].startswith("text/html")
    assert get_order(client, merchant, order["out_trade_no"])[1]["status"] == "WAIT_BUYER_PAY"


def test_valid_return_redirects_to_the_configured_page_only(client, merchant):
    order = create_order(client, merchant, total_amount="88.80")
    notify(client, merchant.notification(order["out_trade_no"], "88.80"))
    os.environ["RETURN_REDIRECT_URL"] = "https://shop.example/result?from=alipay"
    try:
        params = merchant.return_query(order["out_trade_no"], "88.80")
        r = _return(client, params)
        unknown = _return(client, merchant.return_query("NOT_OURS", "1.00"))
    finally:
        del os.environ["RETURN_REDIRECT_URL"]
    assert r.status_code == 302
    assert r.headers["Location"] == (f"https://shop.example/result?from=alipay&out_trade_no={order['out_trade_no']}"
                                     "&status=TRADE_SUCCESS")
    assert unknown.status_code == 302 and unknown.headers["Location"].endswith("status=UNKNOWN")


@pytest.mark.parametrize("change", ["tamper", "extra", "drop_sign"])
def test_invalid_return_is_400(client, merchant, change):
    order = create_order(client, merchant, total_amount="88.80")
    params = merchant.return_query(order["out_trade_no"], "88.80")
    if change == "tamper":
        params["total_amount"] = "0.01"
    elif change == "extra":
        params["from"] = "cart"
    else:
        del params["sign"]
    assert _return(client, params).status_code == 400


# ---- the notify Lambda (Function URL, payload 2.0) ------------------------------------------

@pytest.mark.parametrize("encoded", [True, False])
def test_notify_function_url_event(client, merchant, encoded):
    order = create_order(client, merchant, total_amount="3.00")
    body = merchant.notification(order["out_trade_no"], "3.00")
    event = {"version": "2.0", "rawPath": "/", "headers": {"content-type": "application/x-www-form-urlencoded"},
             "requestContext": {"http": {"method": "POST", "path": "/"}},
             "body": base64.b64encode(body).decode() if encoded else body.decode(), "isBase64Encoded": encoded}
    answer = client.lambda_.invoke("notify", event).payload
    assert answer["statusCode"] == 200 and answer["body"] == "success"
    assert answer["headers"]["Content-Type"].startswith("text/plain")
    assert get_order(client, merchant, order["out_trade_no"])[1]["status"] == "TRADE_SUCCESS"
    bad = dict(event, body=base64.b64encode(body + b"&x=1").decode(), isBase64Encoded=True)
    assert client.lambda_.invoke("notify", bad).payload["statusCode"] == 400


def test_legacy_md5_return_is_verified_with_the_md5_key(client, merchant):
    order = create_order(client, merchant, product="legacy", total_amount="9.90")
    params = {"is_success": "T", "exterface": "create_direct_pay_by_user", "out_trade_no": order["out_trade_no"],
              "total_fee": "9.90", "trade_status": "TRADE_FINISHED", "notify_id": "RqPnCoPT3K9%2Fvwbh3I",
              "seller_id": merchant.partner}
    params["sign"] = signing.md5_sign(params, merchant.md5_key)
    params["sign_type"] = "MD5"
    r = _return(client, params)
    assert r.status_code == 200 and b"WAIT_BUYER_PAY" in r.body  # shown, never applied
    assert _return(client, dict(params, total_fee="0.01")).status_code == 400


# ---- gateway routes with Alipay unreachable (nothing listens on the configured port) -------

def test_gateway_routes_answer_502_when_alipay_is_unreachable_and_change_nothing(client, merchant):
    order = create_order(client, merchant, total_amount="5.00")
    no = order["out_trade_no"]
    for path in (f"/orders/{no}/sync", f"/orders/{no}/close"):
        r = client.http.post(path, headers=merchant.auth)
        assert r.status_code == 502 and json.loads(r.body)["error"]["code"] == "gateway_error"
    assert get_order(client, merchant, no)[1]["status"] == "WAIT_BUYER_PAY"
    status, answer = post_order(client, merchant, {"product": "qr", "subject": "s", "total_amount": "1.00",
                                                   "out_trade_no": "QR_DOWN"})
    assert status == 502 and get_order(client, merchant, "QR_DOWN")[1]["status"] == "WAIT_BUYER_PAY"


def test_refund_of_a_paid_order_with_alipay_unreachable_stays_pending(client, merchant):
    order = create_order(client, merchant, total_amount="5.00")
    notify(client, merchant.notification(order["out_trade_no"], "5.00"))
    r = client.http.post(f"/orders/{order['out_trade_no']}/refunds", headers={**merchant.auth, **JSON},
                         body=json.dumps({"refund_amount": "2.00", "out_request_no": "RP"}))
    answer = json.loads(r.body)
    assert r.status_code == 202 and answer["status"] == "REFUND_PENDING"
    assert answer["order"]["refunded_amount"] == "0.00" and answer["order"]["refunds"][0]["status"] == "REFUND_PENDING"
    # What is pending counts against what remains refundable.
    r = client.http.post(f"/orders/{order['out_trade_no']}/refunds", headers={**merchant.auth, **JSON},
                         body=json.dumps({"refund_amount": "3.01"}))
    assert r.status_code == 422


@pytest.mark.parametrize("body,field", [({"refund_amount": 1}, "refund_amount"), ({}, "refund_amount"),
                                        ({"refund_amount": "1.00", "out_request_no": "a-b"}, "out_request_no"),
                                        ({"refund_amount": "1.00", "x": 1}, "x")])
def test_invalid_refund_requests_are_400(client, merchant, body, field):
    order = create_order(client, merchant)
    r = client.http.post(f"/orders/{order['out_trade_no']}/refunds", headers={**merchant.auth, **JSON},
                         body=json.dumps(body))
    assert r.status_code == 400 and json.loads(r.body)["error"]["field"] == field


def test_legacy_orders_have_no_refund_close_or_sync(client, merchant):
    order = create_order(client, merchant, product="legacy", total_amount="2.00")
    no = order["out_trade_no"]
    for path, body in ((f"/orders/{no}/refunds", {"refund_amount": "1.00"}), (f"/orders/{no}/close", None),
                       (f"/orders/{no}/sync", None)):
        r = client.http.post(path, headers={**merchant.auth, **JSON}, body=json.dumps(body) if body else None)
        assert r.status_code == 422 and json.loads(r.body)["error"]["code"] == "not_supported"


def test_new_routes_need_the_token(client, merchant):
    for path in ("/orders/X/refunds", "/orders/X/close", "/orders/X/sync", "/orders/X/app-result"):
        assert client.http.post(path, headers=JSON, body="{}").status_code == 401


def test_the_scheduled_reconciler_runs_one_pass(client, merchant):
    order = create_order(client, merchant, total_amount="5.00")
    event = client.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={},
                                            resources=[])
    summary = client.lambda_.invoke("reconcile", event).payload
    assert summary["shards"] == 16 and summary["due"] == 0 and summary["complete"]  # created seconds ago
    assert get_order(client, merchant, order["out_trade_no"])[1]["status"] == "WAIT_BUYER_PAY"
