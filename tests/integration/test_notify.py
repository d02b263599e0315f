"""POST /alipay/notify: every row of the contract's table, against a moto server over HTTP."""
import urllib.parse

import pytest

from tests.integration.helpers import create_order, events, get_order, notify
from tests.support import new_key


@pytest.fixture
def order(client, merchant):
    return create_order(client, merchant, total_amount="88.80")


def assert_unchanged(client, merchant, out_trade_no, status="WAIT_BUYER_PAY"):
    code, view = get_order(client, merchant, out_trade_no)
    assert code == 200 and view["status"] == status
    return view


def test_verified_notification_applies_and_answers_plain_success(client, merchant, order):
    status, body, content_type = notify(client, merchant.notification(order["out_trade_no"], "88.80"))
    assert (status, body) == (200, "success") and content_type.startswith("text/plain")
    _, view = get_order(client, merchant, order["out_trade_no"])
    assert view["status"] == "TRADE_SUCCESS"
    assert view["trade_no"] == "2026112722001400000000000001" and view["buyer_id"] == "2088102177846880"
    assert view["paid_at"] == "2026-11-27T12:59:30+08:00"
    trail = events(client, merchant, order["out_trade_no"])
    assert [e["type"] for e in trail] == ["created", "transition"]
    assert trail[1]["from"] == "WAIT_BUYER_PAY" and trail[1]["to"] == "TRADE_SUCCESS" and trail[1]["notify_id"]


def test_duplicate_notification_changes_nothing(client, merchant, order):
    body = merchant.notification(order["out_trade_no"], "88.80", notify_id="n-dup")
    for _ in range(3):
        assert notify(client, body)[:2] == (200, "success")
    trail = events(client, merchant, order["out_trade_no"])
    assert [e["type"] for e in trail] == ["created", "transition"]


def test_stale_notification_is_acknowledged_and_changes_nothing(client, merchant, order):
    no = order["out_trade_no"]
    assert notify(client, merchant.notification(no, "88.80", "TRADE_FINISHED"))[:2] == (200, "success")
    assert notify(client, merchant.notification(no, "88.80", "TRADE_SUCCESS"))[:2] == (200, "success")
    assert_unchanged(client, merchant, no, "TRADE_FINISHED")
    assert len(events(client, merchant, no)) == 2


def test_out_of_order_finished_then_success(client, merchant, order):
    no = order["out_trade_no"]
    notify(client, merchant.notification(no, "88.80", "TRADE_SUCCESS"))
    assert notify(client, merchant.notification(no, "88.80", "TRADE_FINISHED"))[:2] == (200, "success")
    trail = events(client, merchant, no)
    assert [(e.get("from"), e.get("to")) for e in trail[1:]] == [("WAIT_BUYER_PAY", "TRADE_SUCCESS"),
                                                                   ("TRADE_SUCCESS", "TRADE_FINISHED")]


def test_signature_from_another_key_is_refused(client, merchant, order):
    fields = merchant.notification_fields(order["out_trade_no"], "88.80")
    assert notify(client, merchant.sign_notification(fields, key=new_key()))[:2] == (400, "failure")
    assert_unchanged(client, merchant, order["out_trade_no"])


def test_app_key_signing_its_own_notification_is_refused(client, merchant, order):
    fields = merchant.notification_fields(order["out_trade_no"], "88.80")
    assert notify(client, merchant.sign_notification(fields, key=merchant.app_key))[:2] == (400, "failure")


def test_tampered_amount_is_refused(client, merchant, order):
    body = merchant.notification(order["out_trade_no"], "88.80").replace(b"total_amount=88.80", b"total_amount=0.01")
    assert b"total_amount=0.01" in body
    assert notify(client, body)[:2] == (400, "failure")
    assert_unchanged(client, merchant, order["out_trade_no"])


def test_missing_sign_is_refused(client, merchant, order):
    body = merchant.notification(order["out_trade_no"], "88.80")
    stripped = b"&".join(p for p in body.split(b"&") if not p.startswith(b"sign="))
    assert notify(client, stripped)[:2] == (400, "failure")


def test_sign_type_rsa_under_rsa2_is_refused(client, merchant, order):
    fields = merchant.notification_fields(order["out_trade_no"], "88.80")
    assert notify(client, merchant.sign_notification(fields, sign_type="RSA"))[:2] == (400, "failure")
    assert_unchanged(client, merchant, order["out_trade_no"])


def test_md5_for_an_openapi_order_is_refused(client, merchant, order):
    assert notify(client, merchant.legacy_notification(order["out_trade_no"], "88.80"))[:2] == (400, "failure")
    assert_unchanged(client, merchant, order["out_trade_no"])


@pytest.mark.parametrize("body", [b"garbage", b"=x&a=b", b"", b"charset=utf-8&subject=%FF%FE",
                                  b"charset=big5&subject=%A4%A4", b"charset=%FF&a=b"])
def test_malformed_bodies_are_refused(client, merchant, body):
    assert notify(client, body)[:2] == (400, "failure")


def test_repeated_field_is_refused(client, merchant, order):
    body = merchant.notification(order["out_trade_no"], "88.80") + b"&trade_status=TRADE_FINISHED"
    assert notify(client, body)[:2] == (400, "failure")
    assert_unchanged(client, merchant, order["out_trade_no"])


def test_body_over_64kb_is_413(client, merchant, order):
    fields = merchant.notification_fields(order["out_trade_no"], "88.80", body="x" * (65 * 1024))
    assert notify(client, merchant.sign_notification(fields))[:2] == (413, "failure")
    assert_unchanged(client, merchant, order["out_trade_no"])


def test_extra_non_empty_field_after_signing_fails_and_empty_one_changes_nothing(client, merchant, order):
    body = merchant.notification(order["out_trade_no"], "88.80")
    assert notify(client, body + b"&extra=1")[:2] == (400, "failure")
    assert_unchanged(client, merchant, order["out_trade_no"])
    assert notify(client, body + b"&extra=")[:2] == (200, "success")
    assert_unchanged(client, merchant, order["out_trade_no"], "TRADE_SUCCESS")


def test_gbk_body_applies(client, merchant, order):
    fields = merchant.notification_fields(order["out_trade_no"], "88.80", charset="gbk", subject="测试商品 中文")
    body = merchant.sign_notification(fields, charset="gbk")
    assert b"%B2%E2%CA%D4" in body  # 测试 in GBK
    status, text, _ = notify(client, body, "application/x-www-form-urlencoded; charset=GBK")
    assert (status, text) == (200, "success")
    assert_unchanged(client, merchant, order["out_trade_no"], "TRADE_SUCCESS")


def test_verified_but_unknown_order_is_422_and_stores_nothing(client, merchant, aws, env):
    assert notify(client, merchant.notification("NO_SUCH_ORDER", "1.00"))[:2] == (422, "failure")
    items = aws["dynamodb"].scan(TableName=env["ORDERS_TABLE"])["Items"]
    assert items == []


def test_amount_mismatch_is_422_with_one_anomaly(client, merchant, order):
    body = merchant.notification(order["out_trade_no"], "8.88", notify_id="n-amount")
    for _ in range(2):
        assert notify(client, body)[:2] == (422, "failure")
    assert_unchanged(client, merchant, order["out_trade_no"])
    anomalies = [e for e in events(client, merchant, order["out_trade_no"]) if e["type"] == "anomaly"]
    assert [(a["reason"], a["notify_id"]) for a in anomalies] == [("amount_mismatch", "n-amount")]


def test_wrong_app_id_with_valid_signature_is_422(client, merchant, order):
    body = merchant.notification(order["out_trade_no"], "88.80", app_id="2021999999999999")
    assert notify(client, body)[:2] == (422, "failure")
    assert_unchanged(client, merchant, order["out_trade_no"])
    assert [e["reason"] for e in events(client, merchant, order["out_trade_no"]) if e["type"] == "anomaly"] == \
        ["app_id_mismatch"]


def test_wrong_seller_is_422(client, merchant, order):
    body = merchant.notification(order["out_trade_no"], "88.80", seller_id="2088999999999999")
    assert notify(client, body)[:2] == (422, "failure")
    assert_unchanged(client, merchant, order["out_trade_no"])


def test_partial_then_full_refund_notifications(client, merchant, order):
    no = order["out_trade_no"]
    notify(client, merchant.notification(no, "88.80"))
    partial = merchant.notification(no, "88.80", refund_fee="10.00", gmt_refund="2026-11-27 14:00:00.123",
                                    out_biz_no="R1")
    for _ in range(2):
        assert notify(client, partial)[:2] == (200, "success")
    _, view = get_order(client, merchant, no)
    assert view["status"] == "TRADE_SUCCESS" and view["refunded_amount"] == "10.00"
    full = merchant.notification(no, "88.80", "TRADE_CLOSED", refund_fee="88.80", gmt_refund="2026-11-27 15:00:00",
                                 gmt_close="2026-11-27 15:00:00", out_biz_no="R2")
    assert notify(client, full)[:2] == (200, "success")
    _, view = get_order(client, merchant, no)
    assert view["status"] == "TRADE_CLOSED" and view["refunded_amount"] == "88.80"
    # Console refunds: recorded as succeeded, their amounts unknown until the refund query tells
    # them (contract): never guessed from differences of cumulative fees.
    assert [(r["out_request_no"], r["status"], r.get("refund_amount")) for r in view["refunds"]] == [
        ("R1", "REFUND_SUCCESS", None), ("R2", "REFUND_SUCCESS", None)]


def test_wrong_content_type_gets_chalices_415(client, merchant, order):
    body = merchant.notification(order["out_trade_no"], "88.80")
    assert notify(client, body, "application/json")[0] == 415
    assert_unchanged(client, merchant, order["out_trade_no"])


def test_legacy_order_paid_by_md5_notification_confirmed_by_notify_verify(client, merchant, mapi):
    order = create_order(client, merchant, product="legacy", total_amount="9.90")
    url = urllib.parse.urlparse(order["payment"]["url"])
    assert url.path.endswith("/gateway.do") and "service=create_direct_pay_by_user" in url.query
    mapi.valid.add("legacy-1")
    body = merchant.legacy_notification(order["out_trade_no"], "9.90", notify_id="legacy-1")
    assert notify(client, body)[:2] == (200, "success")
    assert mapi.calls[-1]["partner"] == [merchant.partner]
    assert_unchanged(client, merchant, order["out_trade_no"], "TRADE_FINISHED")
    # A redelivery is recognised before notify_verify (which would now say false).
    assert notify(client, body)[:2] == (200, "success")
    assert len(mapi.calls) == 1


def test_legacy_notification_whose_notify_verify_says_false_is_refused(client, merchant, mapi):
    order = create_order(client, merchant, product="legacy", total_amount="9.90")
    body = merchant.legacy_notification(order["out_trade_no"], "9.90", notify_id="never-issued")
    assert notify(client, body)[:2] == (400, "failure")
    assert_unchanged(client, merchant, order["out_trade_no"])


def test_rsa_notification_for_a_legacy_order_is_refused(client, merchant, mapi):
    order = create_order(client, merchant, product="legacy", total_amount="9.90")
    assert notify(client, merchant.notification(order["out_trade_no"], "9.90"))[:2] == (400, "failure")
    assert_unchanged(client, merchant, order["out_trade_no"])


def test_legacy_md5_with_wrong_key_is_refused(client, merchant, mapi):
    order = create_order(client, merchant, product="legacy", total_amount="9.90")
    merchant.md5_key, real = "x" * 32, merchant.md5_key
    body = merchant.legacy_notification(order["out_trade_no"], "9.90", notify_id="legacy-2")
    merchant.md5_key = real
    mapi.valid.add("legacy-2")
    assert notify(client, body)[:2] == (400, "failure")
    assert mapi.calls == []


def test_logs_are_json_lines_without_secrets(client, merchant, order, caplog):
    caplog.set_level("INFO", logger="chalice_alipay")
    body = merchant.notification(order["out_trade_no"], "88.80")
    notify(client, body)
    notify(client, body + b"&tampered=1")
    sign = urllib.parse.parse_qs(body.decode())["sign"][0]
    lines = [record.getMessage() for record in caplog.records if record.name == "chalice_alipay"]
    assert lines and all(isinstance(__import__("json").loads(line), dict) for line in lines)
    text = "\n".join(lines)
    assert order["out_trade_no"] in text
    for secret in (merchant.token, sign, merchant.md5_key, merchant.secret["app_private_key"][40:80]):
        assert secret not in text
