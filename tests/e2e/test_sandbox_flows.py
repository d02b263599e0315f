"""The pay -> return -> notify loop against the local sandbox, through chalice local and a moto
server, without a browser: an HTTP client follows the cashier's forms and the redirects."""
import datetime
import json
import subprocess
import sys
import time
from urllib.parse import parse_qsl, urlencode, urlparse

import pytest

from chalicelib.alipay import gateway, keys, signing
from chalicelib.orders import PAID
from tests.e2e.conftest import FormParser

def test_page_flow_by_url(api):
    order = api.create("page")
    cashier = api.open_cashier(order)
    page = api.get(cashier).data.decode()
    assert "88.80" in page and order["out_trade_no"] in page
    back = api.pay(cashier)
    assert back.status == 302 and back.headers["Location"].startswith(api.stack.api_url + "/alipay/return?")
    shown = api.get(back.headers["Location"])  # verified, then sent on to the shop's result page
    assert shown.status == 302
    assert shown.headers["Location"].startswith(f"{api.stack.shop_url}/result?out_trade_no={order['out_trade_no']}")
    final = api.wait_for(order["out_trade_no"], lambda o: o["status"] != "WAIT_BUYER_PAY")
    assert final["status"] == "TRADE_SUCCESS" and final["trade_no"]
    assert [e["source"] for e in api.events(order["out_trade_no"])] == ["api", "notify"]


def test_page_flow_by_auto_submitting_form(api):
    order = api.create("page", total_amount="1.23")
    form = FormParser()
    form.feed(order["payment"]["form"])
    r = api.http.request("POST", form.action, fields=form.fields, encode_multipart=False, redirect=False)
    assert r.status == 302, r.data
    api.pay(api.stack.sandbox_url + r.headers["Location"])
    assert api.wait_for(order["out_trade_no"], lambda o: o["status"] in PAID)["status"] == "TRADE_SUCCESS"


def test_wap_cancel_leaves_the_order_waiting(api):
    order = api.create("wap", quit_url="https://shop.example/cart")
    cashier = api.open_cashier(order)
    r = api.http.request("POST", cashier + "/cancel", redirect=False)
    assert r.status == 200 and b"https://shop.example/cart" in r.data and b"cancelled" in r.data
    assert api.sandbox_notifications(order["out_trade_no"]) == []
    assert api.order(order["out_trade_no"])["status"] == "WAIT_BUYER_PAY"


def test_wap_pay(api):
    order = api.create("wap", total_amount="0.01")
    assert dict(parse_qsl(urlparse(order["payment"]["url"]).query))["method"] == "alipay.trade.wap.pay"
    back = api.pay(api.open_cashier(order))
    assert "method=alipay.trade.wap.pay.return" in back.headers["Location"]
    assert api.wait_for(order["out_trade_no"], lambda o: o["status"] in PAID)["status"] == "TRADE_SUCCESS"


def app_pay(api, order_string, action="pay"):
    r = api.http.request("POST", api.stack.sandbox_url + "/app/pay", encode_multipart=False,
                         fields={"order_string": order_string, "action": action})
    return json.loads(r.data)


def test_app_flow_returns_a_signed_result_and_pays_through_the_notification(api):
    order = api.create("app", total_amount="6.66")
    result = app_pay(api, order["payment"]["order_string"])
    assert result["resultStatus"] == "9000"
    alipay_key = keys.load_public_key(api.get(api.stack.sandbox_url + "/sandbox/alipay_public_key").data.decode())
    answer = gateway.verify_response(result["result"], "alipay.trade.app.pay", [alipay_key])
    assert answer.fields["out_trade_no"] == order["out_trade_no"] and answer.fields["total_amount"] == "6.66"
    assert api.wait_for(order["out_trade_no"], lambda o: o["status"] in PAID)["status"] == "TRADE_SUCCESS"


def test_app_cancel_and_a_tampered_order_string(api):
    order = api.create("app", total_amount="6.66")
    assert app_pay(api, order["payment"]["order_string"], "cancel")["resultStatus"] == "6001"
    tampered = order["payment"]["order_string"].replace("6.66", "0.01")
    refused = app_pay(api, tampered)
    assert refused["resultStatus"] == "4000" and "验签" in refused["memo"]
    assert api.order(order["out_trade_no"])["status"] == "WAIT_BUYER_PAY"


def test_legacy_flow_md5_link_return_and_notify_verify(api):
    order = api.create("legacy", total_amount="9.90")
    back = api.pay(api.open_cashier(order))
    assert "is_success=T" in back.headers["Location"]
    shown = api.get(back.headers["Location"])
    assert shown.status == 302 and "out_trade_no=" in shown.headers["Location"]
    final = api.wait_for(order["out_trade_no"], lambda o: o["status"] != "WAIT_BUYER_PAY")
    assert final["status"] == "TRADE_FINISHED"
    notes = api.sandbox_notifications(order["out_trade_no"])
    assert notes[0]["done"] and notes[0]["attempts"][0]["body"] == "success"
    # A notify_id validates until it was acknowledged with success (protocol §8.3).
    check = api.get(f"{api.stack.sandbox_url}/gateway.do?service=notify_verify&partner=2088102177640000"
                    f"&notify_id={notes[0]['notify_id']}")
    assert check.data == b"false"


def test_sandbox_refuses_a_tampered_request_with_the_string_it_expected(api):
    order = api.create("page", total_amount="88.80")
    tampered = order["payment"]["url"].replace("88.80", "0.01")
    r = api.get(tampered)
    assert r.status == 400 and b"isv.invalid-signature" in r.data and "0.01".encode() in r.data


def test_sandbox_refuses_a_timestamp_that_is_not_beijing_time(api):
    order = api.create("page")
    params = dict(parse_qsl(urlparse(order["payment"]["url"]).query))
    utc = datetime.datetime.now(datetime.timezone.utc)
    params["timestamp"] = utc.strftime("%Y-%m-%d %H:%M:%S")  # the mistake of most SDKs on a UTC host
    del params["sign"]
    params["sign"] = signing.sign_params(params, api.stack.app_key)
    r = api.get(api.stack.sandbox_url + "/gateway.do?" + urlencode(params))
    assert r.status == 400 and b"isv.invalid-timestamp" in r.data


# ---- scenarios ---------------------------------------------------------------------------


def opened_order(api, total_amount="50.00"):
    order = api.create("page", total_amount=total_amount)
    api.open_cashier(order)
    return order["out_trade_no"]


def transitions(api, no):
    return [(e["from"], e["to"]) for e in api.events(no) if e["type"] == "transition"]


def test_scenario_duplicate_applies_once(api):
    no = opened_order(api)
    api.trigger("duplicate", no, times=3)
    notes = api.wait_delivered(no, 3)
    assert all(n["attempts"][0]["body"] == "success" for n in notes)
    assert transitions(api, no) == [("WAIT_BUYER_PAY", "TRADE_SUCCESS")]


def test_scenario_out_of_order_finished_first(api):
    no = opened_order(api)
    api.trigger("out_of_order", no)
    api.wait_delivered(no, 2)
    assert api.order(no)["status"] == "TRADE_FINISHED"
    assert transitions(api, no) == [("WAIT_BUYER_PAY", "TRADE_FINISHED")]


def test_scenario_delayed_notification_arrives_later(api):
    no = opened_order(api)
    api.trigger("delayed", no, seconds=1.5)
    api.pay(api.stack.sandbox_url + f"/cashier/2021000122600001-{no}")
    assert api.order(no)["status"] == "WAIT_BUYER_PAY"  # paid at Alipay, not told yet
    assert api.wait_for(no, lambda o: o["status"] in PAID)["status"] == "TRADE_SUCCESS"


def test_scenario_never_sent_leaves_the_order_waiting(api):
    no = opened_order(api)
    api.trigger("never_sent", no)
    api.pay(api.stack.sandbox_url + f"/cashier/2021000122600001-{no}")
    assert api.sandbox_notifications(no) == []
    assert api.order(no)["status"] == "WAIT_BUYER_PAY"


def test_scenario_bad_signature_is_refused_and_retried(api):
    no = opened_order(api)
    api.trigger("bad_signature", no)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        notes = api.sandbox_notifications(no)
        if len(notes[0]["attempts"]) >= 2:
            break
        time.sleep(0.2)
    attempts = notes[0]["attempts"]
    assert len(attempts) >= 2 and all((a["status"], a["body"]) == (400, "failure") for a in attempts)
    assert api.order(no)["status"] == "WAIT_BUYER_PAY" and transitions(api, no) == []


@pytest.mark.parametrize("scenario,reason", [("wrong_amount", "amount_mismatch"), ("wrong_app_id", "app_id_mismatch")])
def test_scenario_contradicting_notifications_are_anomalies(api, scenario, reason):
    no = opened_order(api)
    api.trigger(scenario, no)
    notes = api.wait_delivered(no, 1)
    assert (notes[0]["attempts"][0]["status"], notes[0]["attempts"][0]["body"]) == (422, "failure")
    assert api.order(no)["status"] == "WAIT_BUYER_PAY"
    assert [e["reason"] for e in api.events(no) if e["type"] == "anomaly"] == [reason]


@pytest.mark.parametrize("scenario", ["gbk", "extra_params"])
def test_scenario_gbk_and_extra_parameters_verify_and_apply(api, scenario):
    no = opened_order(api)
    api.trigger(scenario, no)
    notes = api.wait_delivered(no, 1)
    assert notes[0]["attempts"][0]["body"] == "success", notes[0]["attempts"]
    assert api.order(no)["status"] == "TRADE_SUCCESS"


def test_scenario_late_finished(api):
    no = api.paid_order()
    api.trigger("late_finished", no)
    assert api.wait_for(no, lambda o: o["status"] == "TRADE_FINISHED")["status"] == "TRADE_FINISHED"
    assert transitions(api, no) == [("WAIT_BUYER_PAY", "TRADE_SUCCESS"), ("TRADE_SUCCESS", "TRADE_FINISHED")]


def test_scenario_partial_refunds_then_full(api):
    no = api.paid_order("50.00")
    api.trigger("partial_refund", no, refund_amount="10.00", out_request_no="R1")
    api.wait_for(no, lambda o: o["refunded_amount"] == "10.00")
    api.trigger("partial_refund", no, refund_amount="15.00", out_request_no="R2")
    api.wait_for(no, lambda o: o["refunded_amount"] == "25.00")
    api.trigger("full_refund", no, out_request_no="R3")
    final = api.wait_for(no, lambda o: o["status"] == "TRADE_CLOSED")
    assert final["status"] == "TRADE_CLOSED" and final["refunded_amount"] == "50.00"
    # Refunds we did not start: each recorded once as succeeded; their amounts come from the refund
    # query, never from differences between cumulative fees (contract "Refund outcomes").
    assert [(r["out_request_no"], r["status"]) for r in final["refunds"]] == \
        [("R1", "REFUND_SUCCESS"), ("R2", "REFUND_SUCCESS"), ("R3", "REFUND_SUCCESS")]


def test_trigger_from_the_command_line(api):
    no = opened_order(api)
    done = subprocess.run([sys.executable, "-m", "sandbox", "trigger", "gbk", no, "--url", api.stack.sandbox_url],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and json.loads(done.stdout)["queued"]
    assert api.wait_for(no, lambda o: o["status"] in PAID)["status"] == "TRADE_SUCCESS"
