"""Alipay's ledger: trades, their payment, refunds, close and timeout (protocol §3.5, §3.6).

Every change of a trade happens here, under the state lock, and queues the notification Alipay
would send for it (notifications.py delivers them)."""
import json
import secrets
from decimal import Decimal, InvalidOperation

from sandbox import timing
from sandbox.errors import business
from sandbox.timing import stamp

PRODUCT_CODES = {"alipay.trade.precreate": "FACE_TO_FACE_PAYMENT", "alipay.trade.pay": "FACE_TO_FACE_PAYMENT",
                 "alipay.trade.page.pay": "FAST_INSTANT_TRADE_PAY",
                 "alipay.trade.wap.pay": "QUICK_WAP_WAY", "alipay.trade.app.pay": "QUICK_MSECURITY_PAY"}
# Which products notify a close (protocol §3.5, "Which statuses are notified"): both sources agree
# that wap and app notify TRADE_CLOSED and that page and precreate notify TRADE_SUCCESS only.
CLOSE_NOTIFIED = {"alipay.trade.wap.pay", "alipay.trade.app.pay"}
BUYER_ID = "2088102177846880"
CENT = Decimal("0.01")


def trade_id(owner, out_trade_no):
    """A trade's key in the sandbox's state: its app (or legacy partner) and its out_trade_no."""
    return f"{owner}-{out_trade_no or ''}"


def payment_fields(trade):
    """What the pay and query answers say of a trade's money, zeros until it is paid (§3.7)."""
    paid = bool(trade.get("gmt_payment"))
    amount = trade["total_amount"] if paid else "0.00"
    fields = {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
              "buyer_logon_id": "buy***@sandbox.com", "total_amount": trade["total_amount"],
              "receipt_amount": amount, "buyer_pay_amount": amount, "invoice_amount": amount, "point_amount": "0.00"}
    if paid:
        fields["fund_bill_list"] = [{"fund_channel": "ALIPAYACCOUNT", "amount": amount}]
    return fields


def check_amount(value):
    """Yuan, at most two decimals, 0.01-100000000 (§2.5); the string itself is kept."""
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise business("ACQ.INVALID_PARAMETER", "金额无效") from None
    if not amount.is_finite() or amount.as_tuple().exponent < -2 or not CENT <= amount <= Decimal("100000000"):
        raise business("ACQ.INVALID_PARAMETER", "金额无效")
    return value


def money(amount):
    return format(Decimal(amount).quantize(CENT), "f")


class Ledger:
    """Mixed into Sandbox: needs self.state, self.clock and the Notifier's queue/notification."""

    def now(self):
        return self.clock.now()

    def new_trade_no(self, kind="2200"):
        return self.now().strftime("%Y%m%d") + kind + "".join(secrets.choice("0123456789") for _ in range(16))

    # ---- finding trades --------------------------------------------------------------------

    def trade(self, trade_id):
        trade = self.state.data["trades"].get(trade_id)
        if trade is None:
            raise business("ACQ.TRADE_NOT_EXIST")
        self.expire_if_due(trade)
        return trade

    def find_trade(self, out_trade_no):
        for trade in self.state.data["trades"].values():
            if trade["out_trade_no"] == out_trade_no:
                self.expire_if_due(trade)
                return trade
        raise business("ACQ.TRADE_NOT_EXIST", f"交易不存在: {out_trade_no}")

    # ---- creation and payment -------------------------------------------------------------

    def trade_from_biz(self, app, params, method):
        try:
            biz = json.loads(params.get("biz_content") or "")
        except ValueError:
            raise business("ACQ.INVALID_PARAMETER", "biz_content 不是 JSON") from None
        if biz.get("product_code") != PRODUCT_CODES[method]:
            raise business("ACQ.INVALID_PARAMETER", "product_code 不匹配")
        amount = check_amount(biz.get("total_amount"))
        out_trade_no = biz.get("out_trade_no") or ""
        key = trade_id(params["app_id"], out_trade_no)
        with self.state.lock:
            trade = self.state.data["trades"].get(key)
            if trade:
                self.expire_if_due(trade)
                if trade["total_amount"] != amount:
                    raise business("ACQ.CONTEXT_INCONSISTENT")
                self.refuse_unless_waiting(trade)
            else:
                created = self.now()
                try:
                    expires = timing.expiry(created, biz)
                except timing.BadExpiry as error:
                    raise business("ACQ.INVALID_PARAMETER", str(error)) from None
                trade = {"id": key, "kind": "openapi", "app_id": params["app_id"], "out_trade_no": out_trade_no,
                         "seller_id": app["seller_id"], "status": "WAIT_BUYER_PAY", "created": stamp(created),
                         "expires_at": stamp(expires), "trade_no": self.new_trade_no(), "refund_fee": "0.00"}
            trade.update(method=method, subject=biz.get("subject", ""), body=biz.get("body") or "",
                         total_amount=amount, notify_url=params.get("notify_url"), return_url=params.get("return_url"),
                         quit_url=biz.get("quit_url"), passback_params=biz.get("passback_params"),
                         charset=params.get("charset") or "utf-8", sign_type=params["sign_type"])
            self.state.data["trades"][key] = trade
            self.expire_if_due(trade)
            self.refuse_unless_waiting(trade)  # a link that comes after its own time_expire
            self.state.save()
        return trade

    @staticmethod
    def refuse_unless_waiting(trade):
        """A trade offered for payment again: closed is not paid (issue 11, departure 2)."""
        if trade["status"] == "TRADE_CLOSED":
            raise business("ACQ.TRADE_HAS_CLOSE")
        if trade["status"] != "WAIT_BUYER_PAY":
            raise business("ACQ.TRADE_HAS_SUCCESS")

    def pay(self, trade, status="TRADE_SUCCESS", at=None):
        self.refuse_unless_waiting(trade)
        with self.state.lock:
            trade.update(status="TRADE_FINISHED" if trade["kind"] == "legacy" else status,
                         gmt_payment=stamp(at or self.now()), buyer_id=BUYER_ID, buyer_acted=True)
            self.state.save()
        return self.queue(trade, self.notification(trade), "payment", delay=trade.pop("notify_delay", 0))

    # ---- close and timeout ----------------------------------------------------------------

    def close(self, trade, by="close"):
        with self.state.lock:
            trade.update(status="TRADE_CLOSED", gmt_close=stamp(self.now()), closed_by=by)
            self.state.save()

    def expire_if_due(self, trade):
        """An unpaid trade closes at its expiry (§3.5): TRADE_CLOSED without refund_fee. Only
        wap and app trades that the buyer opened are notified of it. Whether it closed now, and
        the notification queued for it (or None). A barcode buyer due to confirm pays first."""
        if trade.get("status") != "WAIT_BUYER_PAY" or self.confirm_if_due(trade) or not trade.get("expires_at"):
            return False, None
        expires = timing.parse_stamp(trade["expires_at"])
        if expires is None or self.now() < expires:
            return False, None
        with self.state.lock:
            if trade["status"] != "WAIT_BUYER_PAY":
                return False, None
            trade.update(status="TRADE_CLOSED", gmt_close=trade["expires_at"], closed_by="timeout")
            self.state.save()
        if trade.get("buyer_acted") and trade.get("method") in CLOSE_NOTIFIED:
            built = self.notification(trade, "TRADE_CLOSED", gmt_close=trade["gmt_close"])
            return True, self.queue(trade, built, "timeout close")
        return True, None

    def close_expired(self):
        with self.state.lock:
            waiting = [t for t in self.state.data["trades"].values() if t.get("status") == "WAIT_BUYER_PAY"]
        return [t["out_trade_no"] for t in waiting if self.expire_if_due(t)[0]]

    # ---- refunds --------------------------------------------------------------------------

    def refuse_refund(self, trade):
        """Alipay's refusals by trade status (§3.6, §5.3)."""
        if trade["status"] == "TRADE_CLOSED":
            raise business("ACQ.TRADE_HAS_CLOSE")
        if trade["status"] == "TRADE_FINISHED":
            raise business("ACQ.TRADE_HAS_FINISHED")
        if trade["status"] != "TRADE_SUCCESS":
            raise business("ACQ.TRADE_STATUS_ERROR")

    def refund(self, trade, amount, out_request_no, reason=None):
        """Perform a refund or find the same one again: (record, fund_change). A new refund
        moves money, adds to the cumulative refund_fee and is notified (the record then names the
        queued notification); the same out_request_no and amount again changes nothing
        (fund_change N); another amount is refused."""
        amount = Decimal(check_amount(amount))
        with self.state.lock:
            refunds = trade.setdefault("refunds", {})
            done = refunds.get(out_request_no)
            if done is not None:
                if Decimal(done["amount"]) != amount:
                    raise business("ACQ.DISCORDANT_REPEAT_REQUEST")
                return done, "N"
            self.refuse_refund(trade)
            fee = Decimal(trade.get("refund_fee", "0")) + amount
            if fee > Decimal(trade["total_amount"]):
                raise business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
            now = self.now()
            refunds[out_request_no] = {"amount": money(amount), "gmt_refund_pay": stamp(now), "reason": reason or ""}
            record = dict(refunds[out_request_no])  # what the caller gets back; the stored one stays plain
            trade["refund_fee"] = money(fee)
            full = fee == Decimal(trade["total_amount"])
            if full:  # a paid trade closes only by a full refund (§3.6)
                trade.update(status="TRADE_CLOSED", gmt_close=stamp(now), closed_by="refund")
            self.state.save()
        extra = {"refund_fee": trade["refund_fee"], "gmt_refund": stamp(now, millis=True), "out_biz_no": out_request_no}
        if full:
            extra["gmt_close"] = trade["gmt_close"]
        label = "full refund" if full else "partial refund"
        record["notification"] = self.queue(trade, self.notification(trade, trade["status"], **extra), label)
        return record, "Y"

    def new_out_request_no(self):
        """What the merchant console gives a refund made there."""
        return self.now().strftime("%Y%m%d") + "RF" + secrets.token_hex(5)
