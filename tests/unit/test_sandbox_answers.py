"""Issue 11: each departure of the sandbox from Alipay, as a test that failed on the sandbox of
f8ecd6e. Requests are signed and answers verified with the service's protocol code."""
import html
import json
from urllib.parse import urlencode

import pytest

from chalicelib.alipay import signing
from tests.sandboxkit import APP_ID, Merchant, query_of

REFUND = "alipay.trade.refund"


@pytest.fixture
def merchant():
    return Merchant()


# 1. 40002 under the method's own node, signed ----------------------------------------------

@pytest.mark.parametrize("spoil,sub_code", [({"sign": None}, "isv.invalid-signature"),
                                             ({"timestamp": "2020-01-01 00:00:00"}, "isv.invalid-timestamp")])
def test_invalid_signature_and_timestamp_answer_under_the_method_node_signed(merchant, spoil, sub_code):
    params = merchant.signed(REFUND, {"out_trade_no": "A1", "refund_amount": "1.00"})
    if spoil.get("timestamp"):
        params["timestamp"] = spoil["timestamp"]
        params["sign"] = signing.sign_params({k: v for k, v in params.items() if k != "sign"}, merchant.app_key)
    else:
        params["biz_content"] = params["biz_content"].replace("1.00", "9.00")  # signed as 1.00
    response = merchant.client.post("/gateway.do", data=urlencode(params),
                                    content_type="application/x-www-form-urlencoded")
    assert json.loads(response.data).keys() == {"alipay_trade_refund_response", "sign"}
    fields = merchant.answer(response, REFUND)
    assert (fields["code"], fields["sub_code"]) == ("40002", sub_code)


def test_an_unknown_app_id_is_an_unsigned_error_response(merchant):
    response = merchant.call(REFUND, {"out_trade_no": "A1", "refund_amount": "1.00"}, app_id="2021000000000999")
    body = json.loads(response.data)
    assert body == {"error_response": {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-app-id",
                                       "sub_msg": "无效的AppID参数"}}


# 2. a closed trade offered for payment again is closed, not paid ---------------------------

def test_precreate_and_pay_link_of_a_closed_trade_answer_trade_has_close(merchant):
    merchant.opened("C1")
    closed = merchant.answer(merchant.call("alipay.trade.close", {"out_trade_no": "C1"}), "alipay.trade.close")
    assert closed["code"] == "10000"
    again = merchant.answer(merchant.call("alipay.trade.precreate", {"out_trade_no": "C1", "total_amount": "10.00",
                                                                     "subject": "s"}), "alipay.trade.precreate")
    assert (again["code"], again["sub_code"]) == ("40004", "ACQ.TRADE_HAS_CLOSE")
    page = merchant.pay_link("C1")
    assert page.status_code == 400 and b"ACQ.TRADE_HAS_CLOSE" in page.data
    merchant.paid("P1")
    assert b"ACQ.TRADE_HAS_SUCCESS" in merchant.pay_link("P1").data


# 3. refunds refused as Alipay refuses them ---------------------------------------------------

def test_a_partial_refund_without_out_request_no_is_refused(merchant):
    merchant.paid("R1", "10.00")
    answer = merchant.answer(merchant.call(REFUND, {"out_trade_no": "R1", "refund_amount": "4.00"}), REFUND)
    assert (answer["code"], answer["sub_code"]) == ("40004", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
    assert merchant.trade("R1")["refund_fee"] == "0.00"
    whole = merchant.answer(merchant.call(REFUND, {"out_trade_no": "R1", "refund_amount": "10.00"}), REFUND)
    assert (whole["code"], whole["fund_change"], whole["refund_fee"]) == ("10000", "Y", "10.00")


@pytest.mark.parametrize("make,sub_code", [("close", "ACQ.TRADE_HAS_CLOSE"), ("finish", "ACQ.TRADE_HAS_FINISHED")])
def test_refund_of_a_closed_or_finished_trade(merchant, make, sub_code):
    if make == "close":
        merchant.opened("F1")
        merchant.call("alipay.trade.close", {"out_trade_no": "F1"})
    else:
        merchant.paid("F1")
        merchant.trigger("late_finished", "F1")
    answer = merchant.answer(merchant.call(REFUND, {"out_trade_no": "F1", "refund_amount": "1.00",
                                                    "out_request_no": "X"}), REFUND)
    assert (answer["code"], answer["sub_code"]) == ("40004", sub_code)


# 4. the request's charset, for the query string and for the answer -------------------------

def test_a_gbk_request_in_the_url_query_is_decoded_and_answered_in_gbk(merchant):
    merchant.paid("G1", "10.00")
    refund = merchant.call(REFUND, {"out_trade_no": "G1", "refund_amount": "2.00", "out_request_no": "G1R",
                                    "refund_reason": "质量问题"}, charset="GBK", in_query=True)
    assert refund.headers["Content-Type"] == "application/json;charset=GBK"
    assert merchant.answer(refund, REFUND, "gbk")["fund_change"] == "Y"
    query = merchant.call("alipay.trade.fastpay.refund.query", {"out_trade_no": "G1", "out_request_no": "G1R"},
                          charset="GBK", in_query=True)
    assert "质量问题".encode("gbk") in query.data  # GBK bytes, not UTF-8
    assert merchant.answer(query, "alipay.trade.fastpay.refund.query", "gbk")["refund_reason"] == "质量问题"


def test_an_unknown_charset_is_refused(merchant):
    params = merchant.signed("alipay.trade.query", {"out_trade_no": "X"})
    params["charset"] = "latin-9"
    response = merchant.client.post("/gateway.do?" + urlencode(params))
    assert json.loads(response.data)["error_response"]["sub_code"] == "isv.invalid-charset"


# 5. a MAPI return's notify_id validates for about a minute ---------------------------------

PARTNER, MD5_KEY = "2088102177640000", "0123456789abcdef0123456789abcdef"


def legacy_return(merchant):
    merchant.admin("/sandbox/partners", {"partner": PARTNER, "md5_key": MD5_KEY})
    params = {"service": "create_direct_pay_by_user", "partner": PARTNER, "_input_charset": "utf-8",
              "out_trade_no": "L1", "subject": "茶", "payment_type": "1", "total_fee": "9.90",
              "seller_id": PARTNER, "return_url": "http://shop.example/return", "notify_url": "http://127.0.0.1:9/n"}
    params.update(sign=signing.md5_sign(params, MD5_KEY), sign_type="MD5")
    cashier = merchant.client.get("/gateway.do?" + urlencode(params)).headers["Location"]
    return merchant.client.post(cashier + "/pay").headers["Location"]


def test_a_mapi_return_notify_id_validates_for_about_a_minute(merchant):
    returned = query_of(legacy_return(merchant))  # decoded once, as the merchant's framework does
    signing.md5_verify(returned, MD5_KEY)  # raises unless the MD5 covers what arrived
    notify_id = returned["notify_id"]
    assert "%2F" in notify_id and "%2B" in notify_id  # `/` and `+`, still encoded once (protocol §8.3)

    def notify_verify():  # the legacy demo passes the value on without encoding it again
        url = f"/gateway.do?service=notify_verify&partner={PARTNER}&notify_id={notify_id}"
        return merchant.client.get(url).data

    assert notify_verify() == b"true"
    merchant.admin("/sandbox/clock", {"advance_seconds": 61})
    assert notify_verify() == b"false"


# 8. smaller departures --------------------------------------------------------------------------

@pytest.mark.parametrize("left_out,sub_code", [("sign", "isv.missing-signature"),
                                               ("sign_type", "isv.missing-signature-type"),
                                               ("app_id", "isv.missing-app-id")])
def test_missing_arguments_are_named_as_in_the_public_list(merchant, left_out, sub_code):
    params = merchant.signed("alipay.trade.query", {"out_trade_no": "X"})
    del params[left_out]
    body = json.loads(merchant.client.post("/gateway.do", data=urlencode(params),
                                           content_type="application/x-www-form-urlencoded").data)
    answer = next(iter(v for k, v in body.items() if k.endswith("_response")))
    assert (answer["code"], answer["sub_code"]) == ("40001", sub_code)


@pytest.mark.parametrize("method,sub_code", [(None, "isv.missing-method"), ("alipay.trade.nope", "isv.invalid-method")])
def test_a_missing_or_unknown_method_is_a_json_answer(merchant, method, sub_code):
    params = merchant.signed(method, {"out_trade_no": "X"})
    response = merchant.client.post("/gateway.do", data=urlencode(params),
                                    content_type="application/x-www-form-urlencoded")
    assert response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.data)["error_response"]["sub_code"] == sub_code


def test_timestamp_message_and_the_escaped_string_to_sign(merchant):
    stale = merchant.answer(merchant.call("alipay.trade.query", {"out_trade_no": "X"},
                                          timestamp="2020-01-01 00:00:00"), "alipay.trade.query")
    assert stale["sub_msg"] == "非法的时间戳参数"
    params = merchant.signed("alipay.trade.query", {"out_trade_no": "X"})
    params["sign"] = params["sign"][::-1]
    bad = merchant.answer(merchant.client.post("/gateway.do", data=urlencode(params),
                                               content_type="application/x-www-form-urlencoded"), "alipay.trade.query")
    expected = signing.canonical_string({k: v for k, v in params.items() if k != "sign"}, {"sign"})
    assert bad["sub_msg"].endswith(html.escape(expected)) and "&amp;" in bad["sub_msg"] and "&quot;" in bad["sub_msg"]


def test_a_repeated_refund_keeps_its_gmt_refund_pay(merchant):
    merchant.paid("T1", "10.00")
    merchant.admin("/sandbox/clock", {"advance_seconds": 5})
    biz = {"out_trade_no": "T1", "refund_amount": "3.00", "out_request_no": "T1R"}
    first = merchant.answer(merchant.call(REFUND, biz), REFUND)
    now = json.loads(merchant.admin("/sandbox/clock", {"advance_seconds": 5}).data)["now"]
    again = merchant.answer(merchant.call(REFUND, biz), REFUND)
    assert (first["fund_change"], again["fund_change"]) == ("Y", "N")
    # The refund's own time, not the time of the repeat.
    assert again["gmt_refund_pay"] == first["gmt_refund_pay"] != now and again["refund_fee"] == "3.00"


def test_query_answers_carry_the_amounts_and_an_unpaid_trade_reports_nothing_paid(merchant):
    merchant.opened("Q1", "12.34")
    waiting = merchant.answer(merchant.call("alipay.trade.query", {"out_trade_no": "Q1"}), "alipay.trade.query")
    assert waiting["trade_status"] == "WAIT_BUYER_PAY" and waiting["buyer_pay_amount"] == "0.00"
    assert "send_pay_date" not in waiting and "fund_bill_list" not in waiting
    merchant.client.post(f"/cashier/{APP_ID}-Q1/pay")
    paid = merchant.answer(merchant.call("alipay.trade.query", {"out_trade_no": "Q1"}), "alipay.trade.query")
    assert {k: paid[k] for k in ("buyer_pay_amount", "receipt_amount", "invoice_amount", "point_amount")} == {
        "buyer_pay_amount": "12.34", "receipt_amount": "12.34", "invoice_amount": "12.34", "point_amount": "0.00"}
    assert paid["fund_bill_list"] == [{"amount": "12.34", "fund_channel": "ALIPAYACCOUNT"}]


def test_notifications_carry_the_order_body_and_real_shaped_notify_ids(merchant):
    merchant.paid("N1", "1.00", body="两杯茶")
    note = merchant.notifications("N1")[0]
    assert note["body"] == "两杯茶"
    assert note["notify_id"].isdigit() and len(note["notify_id"]) == 34  # like notify_v1_real.json's
