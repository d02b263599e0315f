"""Make Alipay misbehave, or act, for one trade: `python -m sandbox trigger SCENARIO NO`.

Each scenario is a method `scenario_<name>`; SCENARIOS is what `--help` lists."""
import inspect
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.errors import business
from sandbox.timing import stamp
from sandbox.trades import money

SCENARIOS = {
    "duplicate": "the payment notification sent several times (times=2)",
    "out_of_order": "TRADE_FINISHED delivered before TRADE_SUCCESS",
    "delayed": "the notification waits (seconds=5); on a waiting trade, its payment's notification will",
    "never_sent": "from now on nothing of this trade is notified",
    "bad_signature": "the payment notification signed with a stranger's key",
    "wrong_amount": "the payment notification with total_amount + 1.00",
    "wrong_app_id": "the payment notification for another app_id",
    "gbk": "the payment notification in GBK",
    "extra_params": "the payment notification with fields the merchant never heard of",
    "late_finished": "the trade reported TRADE_FINISHED (even one closed here: Alipay's word wins)",
    "partial_refund": "a refund made in the merchant console (refund_amount=1.00, out_request_no=...)",
    "console_refund": "the same: a refund made in the merchant console (amount=..., out_request_no=...)",
    "full_refund": "the rest refunded in the merchant console (out_request_no=...)",
    "expire": "the trade reaches its expiry now (timeout close, protocol §3.5)",
    "buyer_pays": "a waiting trade is paid now, as a barcode buyer who confirms on the phone (notified)",
}


class Scenarios:
    """Mixed into Sandbox: needs the Ledger and the Notifier."""

    def trigger(self, scenario, out_trade_no, **options):
        if scenario not in SCENARIOS:
            raise business("SANDBOX.UNKNOWN_SCENARIO", f"no scenario {scenario}; known: {', '.join(SCENARIOS)}")
        handler = getattr(self, "scenario_" + scenario)
        accepted = set(inspect.signature(handler).parameters) - {"trade"}
        if set(options) - accepted:
            raise business("SANDBOX.UNKNOWN_OPTION", f"{scenario} takes {', '.join(sorted(accepted)) or 'no options'}")
        trade = self.find_trade(out_trade_no)
        result = handler(trade, **options)
        if not (isinstance(result, dict) and "queued" in result):  # one notification entry, or a list
            result = {"queued": result}
        queued = result["queued"] if isinstance(result["queued"], list) else [result["queued"]]
        return dict(result, scenario=scenario, out_trade_no=out_trade_no, queued=[q["id"] for q in queued if q])

    def _paid(self, trade):
        """Variants of the payment notification pay the trade first, without the plain one."""
        if trade["status"] == "WAIT_BUYER_PAY":
            with self.state.lock:
                trade["suppress_notify"], was = True, trade.get("suppress_notify")
            self.pay(trade)
            trade["suppress_notify"] = was
        return trade

    def scenario_duplicate(self, trade, times=2):
        built = self.notification(self._paid(trade))
        return [self.queue(trade, built, "duplicate") for _ in range(int(times))]

    def scenario_out_of_order(self, trade):
        self._paid(trade)
        finished = self.notification(trade, "TRADE_FINISHED")
        success = self.notification(trade, "TRADE_SUCCESS")
        with self.state.lock:
            trade["status"] = "TRADE_FINISHED"
        return [self.queue(trade, finished, "out of order: finished first"),
                self.queue(trade, success, "out of order: success second", delay=0.3)]

    def scenario_delayed(self, trade, seconds=5):
        if trade["status"] == "WAIT_BUYER_PAY":
            with self.state.lock:
                trade["notify_delay"] = float(seconds)  # the payment's notification waits
                self.state.save()
            return {"queued": [], "note": f"the trade is waiting for the buyer: nothing to send yet; its payment "
                                          f"notification will be sent {float(seconds):g} s after the payment"}
        return self.queue(trade, self.notification(trade), "delayed", delay=float(seconds))

    def scenario_never_sent(self, trade):
        with self.state.lock:
            trade["suppress_notify"] = True
            self.state.save()
        return {"queued": [], "note": "nothing of this trade will be notified from now on"}

    def scenario_bad_signature(self, trade):
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.queue(trade, self.notification(self._paid(trade), key=stranger), "bad signature")

    def scenario_wrong_amount(self, trade):
        wrong = money(Decimal(trade["total_amount"]) + Decimal("1.00"))
        return self.queue(trade, self.notification(self._paid(trade), total_amount=wrong, receipt_amount=wrong),
                          "wrong amount")

    def scenario_wrong_app_id(self, trade):
        return self.queue(trade, self.notification(self._paid(trade), app_id="2021000000009999",
                                                   auth_app_id="2021000000009999"), "wrong app_id")

    def scenario_gbk(self, trade):
        return self.queue(trade, self.notification(self._paid(trade), charset="gbk"), "GBK charset")

    def scenario_extra_params(self, trade):
        return self.queue(trade, self.notification(self._paid(trade), merchant_app_id=trade.get("app_id", ""),
                                                   some_new_field="新字段 a+b&c=d"), "extra parameters")

    def scenario_late_finished(self, trade):
        self._paid(trade)
        with self.state.lock:
            trade["status"] = "TRADE_FINISHED"
        return self.queue(trade, self.notification(trade, "TRADE_FINISHED"), "late finished")

    def scenario_console_refund(self, trade, amount=None, refund_amount=None, out_request_no=None):
        """A refund made in the merchant console: Alipay's ledger, refund query and notification
        change exactly as for an API refund; refused as Alipay refuses one (§3.6)."""
        if trade["kind"] != "openapi":
            raise business("ACQ.TRADE_NOT_ALLOW_REFUND")
        out_request_no = out_request_no or self.new_out_request_no()
        record, fund_change = self.refund(trade, amount or refund_amount or "1.00", out_request_no)
        return {"queued": [record.get("notification")], "out_request_no": out_request_no,
                "refund_amount": record["amount"], "refund_fee": trade["refund_fee"], "trade_status": trade["status"],
                "note": None if fund_change == "Y" else "this out_request_no was refunded before: nothing moved"}

    scenario_partial_refund = scenario_console_refund

    def scenario_full_refund(self, trade, out_request_no=None):
        self.refuse_refund(trade)
        rest = money(Decimal(trade["total_amount"]) - Decimal(trade.get("refund_fee", "0")))
        return self.scenario_console_refund(trade, amount=rest, out_request_no=out_request_no)

    def scenario_expire(self, trade):
        if trade["status"] != "WAIT_BUYER_PAY":
            raise business("ACQ.TRADE_STATUS_ERROR", f"交易状态不合法: {trade['status']}, only a waiting trade expires")
        with self.state.lock:
            trade["expires_at"] = stamp(self.now())
        _, queued = self.expire_if_due(trade)
        return {"queued": [queued], "trade_status": trade["status"],
                "note": None if queued else "closed without a notification (page, precreate, legacy and trades "
                                            "the buyer never opened are not notified of a close, protocol §3.5)"}

    def scenario_buyer_pays(self, trade):
        with self.state.lock:
            trade.pop("pays_at", None)  # paid now, not at a test code's chosen moment
            queued = self.pay(trade)  # a trade that is not waiting is refused (ACQ.TRADE_HAS_SUCCESS / _CLOSE)
        return {"queued": [queued], "trade_status": trade["status"]}
