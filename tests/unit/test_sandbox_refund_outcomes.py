"""Refunds whose outcome the caller cannot see, made in the console, and the refund query's
answers: what "Money you can trust" is tested against."""
import json
import subprocess
import sys
import threading

import pytest
import urllib3
from werkzeug.serving import make_server

from tests.sandboxkit import Merchant

REFUND, QUERY = "alipay.trade.refund", "alipay.trade.fastpay.refund.query"


@pytest.fixture
def merchant():
    m = Merchant()
    m.paid("M1", "10.00")
    return m


def refund(merchant, amount="4.00", out_request_no="M1R1"):
    return merchant.answer(merchant.call(REFUND, {"out_trade_no": "M1", "refund_amount": amount,
                                                  "out_request_no": out_request_no}), REFUND)


def refund_query(merchant, out_request_no="M1R1"):
    return merchant.answer(merchant.call(QUERY, {"out_trade_no": "M1", "out_request_no": out_request_no}), QUERY)


def test_a_chosen_sub_code_is_answered_without_refunding(merchant):
    merchant.admin("/sandbox/switches", {"method": REFUND, "answer_sub_code": "ACQ.SYSTEM_ERROR", "answer_count": 2})
    for _ in range(2):
        answer = refund(merchant)
        assert (answer["code"], answer["sub_code"], answer["sub_msg"]) == ("40004", "ACQ.SYSTEM_ERROR", "系统错误")
    assert "refund_status" not in refund_query(merchant)  # nothing happened
    assert merchant.trade("M1")["refund_fee"] == "0.00" and merchant.notifications("M1")[1:] == []
    assert refund(merchant)["fund_change"] == "Y"  # the count is spent: the third call refunds


def test_a_performed_refund_can_still_be_answered_as_a_failure(merchant):
    merchant.admin("/sandbox/switches", {"method": REFUND, "answer_sub_code": "ACQ.SYSTEM_ERROR", "perform": True})
    assert refund(merchant)["sub_code"] == "ACQ.SYSTEM_ERROR"
    known = refund_query(merchant)  # the money moved all the same
    assert (known["refund_status"], known["refund_amount"]) == ("REFUND_SUCCESS", "4.00")
    assert merchant.trade("M1")["refund_fee"] == "4.00"
    assert [n["out_biz_no"] for n in merchant.notifications("M1")[1:]] == ["M1R1"]


def test_a_refund_lost_as_a_504_never_takes_effect(merchant):
    merchant.admin("/sandbox/switches", {"method": REFUND, "lost_count": 1, "lost_as": "504"})
    response = merchant.call(REFUND, {"out_trade_no": "M1", "refund_amount": "4.00", "out_request_no": "M1R1"})
    assert response.status_code == 504
    answer = refund_query(merchant)
    assert answer["code"] == "10000" and "refund_status" not in answer


def test_a_refund_lost_with_a_dropped_connection_never_takes_effect(merchant):
    server = make_server("127.0.0.1", 0, merchant.sandbox, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        merchant.admin("/sandbox/switches", {"method": REFUND, "lost_count": 1})
        params = merchant.signed(REFUND, {"out_trade_no": "M1", "refund_amount": "4.00", "out_request_no": "M1R1"})
        http = urllib3.PoolManager(retries=False)
        with pytest.raises(urllib3.exceptions.ProtocolError):
            http.request("POST", f"http://127.0.0.1:{server.server_port}/gateway.do", fields=params,
                         encode_multipart=False)
    finally:
        server.shutdown()
        server.server_close()
    assert "refund_status" not in refund_query(merchant) and merchant.trade("M1")["refund_fee"] == "0.00"


def test_the_refund_query_of_a_known_refund_answers_like_alipay(merchant):
    refund(merchant, "4.00", "M1R1")
    answer = refund_query(merchant)
    assert {k: answer[k] for k in ("refund_status", "refund_amount", "total_amount", "out_request_no")} == {
        "refund_status": "REFUND_SUCCESS", "refund_amount": "4.00", "total_amount": "10.00", "out_request_no": "M1R1"}


def test_a_console_refund_is_recorded_queried_and_notified(merchant):
    partial = json.loads(merchant.trigger("console_refund", "M1", amount="3.00", out_request_no="CON1").data)
    assert (partial["out_request_no"], partial["refund_fee"], partial["trade_status"]) == ("CON1", "3.00",
                                                                                         "TRADE_SUCCESS")
    assert refund_query(merchant, "CON1")["refund_amount"] == "3.00"
    rest = json.loads(merchant.trigger("console_refund", "M1", amount="7.00").data)
    assert rest["out_request_no"] != "CON1" and rest["trade_status"] == "TRADE_CLOSED"
    first, second = merchant.notifications("M1")[1:]
    assert (first["trade_status"], first["out_biz_no"], first["refund_fee"]) == ("TRADE_SUCCESS", "CON1", "3.00")
    assert first["gmt_refund"] and "gmt_close" not in first
    assert (second["trade_status"], second["out_biz_no"], second["refund_fee"]) == (
        "TRADE_CLOSED", rest["out_request_no"], "10.00")
    assert second["gmt_refund"] and second["gmt_close"]


@pytest.mark.parametrize("scenario", ["partial_refund", "full_refund", "console_refund"])
def test_refund_scenarios_are_refused_on_an_unpaid_trade(scenario):
    merchant = Merchant()
    merchant.opened("W1")
    refused = merchant.trigger(scenario, "W1", **({} if scenario == "full_refund" else {"amount": "1.00"}))
    assert refused.status_code == 400 and json.loads(refused.data)["sub_code"] == "ACQ.TRADE_STATUS_ERROR"
    assert merchant.notifications("W1") == []


def test_a_scenario_refuses_options_it_does_not_take():
    merchant = Merchant()
    merchant.paid("O1")
    refused = json.loads(merchant.trigger("full_refund", "O1", amount="1.00").data)
    assert refused["sub_code"] == "SANDBOX.UNKNOWN_OPTION" and "out_request_no" in refused["sub_msg"]


def test_delayed_on_a_waiting_trade_says_why_nothing_was_queued():
    merchant = Merchant()
    merchant.opened("D1")
    answer = json.loads(merchant.trigger("delayed", "D1", seconds=2).data)
    assert answer["queued"] == [] and "waiting for the buyer" in answer["note"]


# ---- the command line ---------------------------------------------------------------------

@pytest.fixture
def served(merchant):
    server = make_server("127.0.0.1", 0, merchant.sandbox, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def cli(*args):
    return subprocess.run([sys.executable, "-m", "sandbox", *args], capture_output=True, text=True, timeout=30)


def test_trigger_prints_alipay_code_and_message_and_exits_non_zero(served):
    done = cli("trigger", "gbk", "NO_SUCH_TRADE", "--url", served)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "ACQ.TRADE_NOT_EXIST" in done.stderr and "交易不存在" in done.stderr


def test_console_refund_from_the_command_line(served, merchant):
    done = cli("trigger", "console_refund", "M1", "--amount", "5.00", "--out-request-no", "CLI1", "--url", served)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["refund_fee"] == "5.00"
    assert refund_query(merchant, "CLI1")["refund_status"] == "REFUND_SUCCESS"


def test_help_lists_every_subcommand_and_scenario():
    from sandbox.scenarios import SCENARIOS
    top = cli("--help").stdout
    assert all(command in top for command in ("serve", "trigger", "reset", "clock", "rotate-cert"))
    trigger_help = cli("trigger", "--help").stdout
    assert all(name in trigger_help for name in SCENARIOS)
