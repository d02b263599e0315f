"""In-store barcode payment (当面付 条码支付) and its cancel (protocol §3.7).

`alipay.trade.pay` takes the buyer's payment code; here the code chooses the outcome (the README
lists the test codes). A buyer "confirming" on the phone pays when the trades' clock reaches the
trade's `pays_at` (trades.expire_if_due asks `confirm_if_due`), unless Alipay's own auto-close
comes first. `alipay.trade.cancel` closes an unpaid trade and refunds a paid one in full."""
import datetime
import json
import re
from decimal import Decimal

from sandbox import timing
from sandbox.errors import AlipayError, business, failure
from sandbox.timing import stamp
from sandbox.trades import check_amount, payment_fields, trade_id

PAY = "alipay.trade.pay"
CANCEL = "alipay.trade.cancel"
# Real codes: 16-24 digits starting 25-30 (alipay.trade.pay reference, auth_code).
AUTH_CODE = re.compile(r"^(2[5-9]|30)[0-9]{14,22}$")
# What a test code's first four digits choose (README, "In-store barcode payments"):
# (what happens to the trade, what the caller is answered).
OUTCOMES = {"2800": ("pay", "paid"), "2810": ("confirm", "waiting"), "2820": ("wait", "waiting"),
            "2840": ("decline", "ACQ.BUYER_BALANCE_NOT_ENOUGH"), "2841": ("none", "ACQ.PAYMENT_AUTH_CODE_INVALID"),
            "2850": ("pay", "lost"), "2851": ("wait", "lost"), "2860": ("pay", "ACQ.SYSTEM_ERROR"),
            "2861": ("wait", "ACQ.SYSTEM_ERROR"), "2870": ("pay", "20000")}
AUTO_CLOSE = datetime.timedelta(minutes=3)  # unpaid barcode trades close after about 3 minutes (§3.7)
CANCEL_WINDOW = datetime.timedelta(hours=24)  # "within 24 h of the trade's creation" (§3.7)
LOST = "_lost"  # a key of the content that tells the gateway to drop the connection
WAITING_MSG = " order success pay inprocess"  # with its leading space, as real 10003 answers have it
DECLINES = {"ACQ.BUYER_BALANCE_NOT_ENOUGH": "买家余额不足",
            "ACQ.PAYMENT_AUTH_CODE_INVALID": "付款码无效，请顾客刷新付款码后重新收款"}


def outcome_of(auth_code):
    """(trade, answer) chosen by a test code; an unknown or malformed code is invalid."""
    code = auth_code if isinstance(auth_code, str) else ""
    if len(code) == 18 and AUTH_CODE.match(code) and code[:4] in OUTCOMES:
        return OUTCOMES[code[:4]]
    return OUTCOMES["2841"]


class Barcode:
    """Mixed into Sandbox: needs the Ledger (trades, pay, close, refund) and the gateway's switches."""

    # ---- alipay.trade.pay -------------------------------------------------------------------

    def do_pay(self, app, params, biz):
        if biz.get("scene") != "bar_code":
            raise business("ACQ.INVALID_PARAMETER", "scene 必须为 bar_code")
        biz = dict(biz, product_code=biz.get("product_code") or "FACE_TO_FACE_PAYMENT")
        with self.state.lock:  # one pay call at a time: a replay racing its original finds one trade
            existing = self.state.data["trades"].get(trade_id(params["app_id"], biz.get("out_trade_no")))
            if existing is not None:
                return self.replayed_pay(existing, biz)
            happens, answer = outcome_of(biz.get("auth_code"))
            if happens == "none":
                raise business(answer, DECLINES[answer])  # no trade is created
            trade = self.trade_from_biz(app, dict(params, biz_content=json.dumps(biz)), PAY)
            created = timing.parse_stamp(trade["created"])
            trade.update(buyer_acted=True, store_id=biz.get("store_id"), terminal_id=biz.get("terminal_id"),
                         expires_at=stamp(min(timing.parse_stamp(trade["expires_at"]), created + AUTO_CLOSE)))
            if happens == "confirm":
                trade["pays_at"] = stamp(created + datetime.timedelta(seconds=int(biz["auth_code"][4:7])))
            self.state.save()
            if happens == "pay":
                self.pay(trade)
            elif happens == "decline":
                self.close(trade, by="declined")
        return self.pay_answer(trade, answer)

    def replayed_pay(self, trade, biz):
        """The same out_trade_no again is the same trade, whatever the code (issue 15)."""
        self.expire_if_due(trade)
        amount = check_amount(biz.get("total_amount"))
        if trade.get("method") != PAY or Decimal(trade["total_amount"]) != Decimal(amount):
            raise business("ACQ.CONTEXT_INCONSISTENT")
        if trade["status"] == "TRADE_CLOSED":
            raise business("ACQ.TRADE_HAS_CLOSE")
        return self.pay_answer(trade, "waiting" if trade["status"] == "WAIT_BUYER_PAY" else "paid")

    def pay_answer(self, trade, answer):
        """The content for the chosen answer; refusals are raised, a lost answer is marked."""
        if answer in DECLINES:
            raise business(answer, DECLINES[answer])
        if answer == "ACQ.SYSTEM_ERROR":
            raise business(answer)
        if answer == "20000":
            raise failure("20000", "isp.unknow-error", "系统繁忙")
        content, paid = payment_fields(trade), bool(trade.get("gmt_payment"))
        content["buyer_user_id"] = trade.get("buyer_id") or ""
        if paid:
            content["gmt_payment"] = trade["gmt_payment"]
        else:
            content = dict({"code": "10003", "msg": WAITING_MSG}, **content)
        if answer == "lost":
            content[LOST] = True
        return content

    def confirm_if_due(self, trade):
        """A confirming buyer pays at `pays_at` on the trades' clock, unless the trade was to
        close first. Whether it paid now."""
        pays_at = timing.parse_stamp(trade.get("pays_at"))
        if pays_at is None or self.now() < pays_at:
            return False
        with self.state.lock:
            expires = timing.parse_stamp(trade.get("expires_at"))
            if trade["status"] != "WAIT_BUYER_PAY" or (expires is not None and expires <= pays_at):
                return False
            trade.pop("pays_at")
            self.pay(trade, at=pays_at)
        return True

    # ---- alipay.trade.cancel ----------------------------------------------------------------

    def do_cancel(self, app, params, biz):
        out_trade_no, trade_no = biz.get("out_trade_no") or "", biz.get("trade_no") or ""
        try:
            if not out_trade_no and not trade_no:
                raise business("ACQ.INVALID_PARAMETER", "out_trade_no 和 trade_no 不能同时为空")
            if self.switch(CANCEL, "retry_count"):
                raise business("ACQ.SYSTEM_ERROR")
            with self.state.lock:
                trade = self.cancelled_trade(params["app_id"], out_trade_no, trade_no)
                if trade is None:  # action and trade_no come only "when the trade exists"
                    return {"out_trade_no": out_trade_no, "retry_flag": "N"}
                action = self.cancel(trade)
        except AlipayError as error:
            retry = "Y" if error.fields["sub_code"] == "ACQ.SYSTEM_ERROR" else "N"
            error.fields.update(out_trade_no=out_trade_no, retry_flag=retry)
            raise
        answer = {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"], "retry_flag": "N",
                  "action": action}
        if action == "refund":
            answer["gmt_refund_pay"] = trade["refunds"][trade["out_trade_no"]]["gmt_refund_pay"]
        return answer

    def cancelled_trade(self, app_id, out_trade_no, trade_no):
        """The trade a cancel names (trade_no wins); None when Alipay does not know it (§3.5)."""
        if trade_no:
            found = [t for t in self.state.data["trades"].values()
                     if t.get("app_id") == app_id and t["trade_no"] == trade_no]
            trade = found[0] if found else None
        else:
            trade = self.state.data["trades"].get(trade_id(app_id, out_trade_no))
        if trade is None or trade.get("kind") != "openapi" or not trade.get("buyer_acted"):
            return None
        self.expire_if_due(trade)
        return trade

    def cancel(self, trade):
        """Close or refund in full, once; the action, the same when repeated."""
        if trade.get("cancelled"):
            return trade["cancelled"]
        if self.now() - timing.parse_stamp(trade["created"]) > CANCEL_WINDOW:
            raise business("ACQ.TRADE_CANCEL_TIME_OUT", "超过撤销时间范围")
        if trade.get("refunds"):
            raise business("ACQ.REASON_TRADE_REFUND_FEE_ERR", "已经退款的交易不能撤销")
        if trade["status"] == "TRADE_FINISHED":
            raise business("ACQ.TRADE_HAS_FINISHED")
        if trade["status"] == "TRADE_SUCCESS":
            # Recorded as a refund named after the trade, so the refund query knows it (issue 15).
            self.refund(trade, trade["total_amount"], trade["out_trade_no"])
            action = "refund"
        elif trade["status"] == "WAIT_BUYER_PAY":
            self.close(trade, by="cancel")
            action = "close"
        else:
            return "close"  # closed before (declined, timed out, closed): nothing to do
        trade.update(cancelled=action, closed_by="cancel")
        self.state.save()
        return action
