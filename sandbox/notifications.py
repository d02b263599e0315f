"""Alipay's asynchronous notifications (protocol §3): the fields, the V1 signature, and the
delivery loop that retries on Alipay's schedule until the answer is exactly `success` (§3.1)."""
import json
import secrets
import time
import urllib.error
import urllib.request

from sandbox import protocol
from sandbox.timing import stamp

RETRY_SCHEDULE = [4 * 60, 10 * 60, 10 * 60, 3600, 2 * 3600, 6 * 3600, 15 * 3600]  # protocol §3.1


class Notifier:
    """Mixed into Sandbox: needs self.state, self.now(), self.signer(app_id), self.time_factor,
    and the legacy gateway's legacy_fields/legacy_signed for MAPI trades."""

    def new_notify_id(self):
        """Shaped like real OpenAPI ids: date, 00222, then digits (notify_v1_real.json)."""
        return self.now().strftime("%Y%m%d") + "00222" + "".join(secrets.choice("0123456789") for _ in range(21))

    def notification_fields(self, trade, status=None, **extra):
        if trade["kind"] == "legacy":
            fields = self.legacy_fields(trade, self.new_legacy_notify_id(trade["partner"]))
            fields["trade_status"] = status or trade["status"]
            fields.update(extra)
            return fields
        amount = trade["total_amount"]
        paid = bool(trade.get("gmt_payment"))
        fields = {"notify_time": stamp(self.now()), "notify_type": "trade_status_sync",
                  "notify_id": self.new_notify_id(), "app_id": trade["app_id"], "auth_app_id": trade["app_id"],
                  "charset": trade["charset"], "version": "1.0", "trade_no": trade["trade_no"],
                  "out_trade_no": trade["out_trade_no"], "buyer_id": trade.get("buyer_id", ""),
                  "buyer_logon_id": "buy***@sandbox.com" if paid else "", "seller_id": trade["seller_id"],
                  "seller_email": "seller@sandbox.com", "trade_status": status or trade["status"],
                  "total_amount": amount, "subject": trade["subject"], "body": trade.get("body") or "",
                  "gmt_create": trade["created"], "gmt_payment": trade.get("gmt_payment", ""),
                  "passback_params": trade.get("passback_params") or ""}
        if paid:  # what the buyer paid: absent from a close of an unpaid trade
            fields.update(receipt_amount=amount, invoice_amount=amount, buyer_pay_amount=amount, point_amount="0.00",
                          fund_bill_list=json.dumps([{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}],
                                                    separators=(",", ":")))
        fields.update(extra)
        return fields

    def sign_fields(self, trade, fields, key=None, charset=None):
        """Signed form body (V1 for OpenAPI, MD5 for legacy) and its Content-Type."""
        if trade["kind"] == "legacy":
            return protocol.encode(self.legacy_signed(trade, fields), trade["charset"]), \
                f"application/x-www-form-urlencoded; charset={trade['charset']}"
        charset = charset or fields.get("charset") or "utf-8"
        fields = {k: v for k, v in fields.items() if v != ""}
        fields["sign_type"] = trade["sign_type"]
        # V1: sign and sign_type are not signed in notifications (§3.3)
        fields["sign"] = protocol.rsa_sign(key or self.signer(trade["app_id"])[0],
                                           protocol.string_to_sign(fields, {"sign", "sign_type"}),
                                           trade["sign_type"], charset)
        return protocol.encode(fields, charset), f"application/x-www-form-urlencoded; charset={charset}"

    def notification(self, trade, status=None, key=None, charset=None, **extra):
        fields = self.notification_fields(trade, status, **extra)
        if charset:
            fields["charset"] = charset
        return fields, self.sign_fields(trade, fields, key=key, charset=charset)

    def queue(self, trade, built, label, delay=0):
        fields, (body, content_type) = built
        if not trade.get("notify_url") or trade.get("suppress_notify"):
            return None
        entry = {"id": secrets.token_hex(6), "out_trade_no": trade["out_trade_no"], "trade_id": trade["id"],
                 "label": label, "url": trade["notify_url"], "body": body, "content_type": content_type,
                 "notify_id": fields["notify_id"], "trade_status": fields.get("trade_status"),
                 "attempts": [], "next_at": time.time() + delay, "done": False}
        with self.state.lock:
            self.state.data["notifications"].append(entry)
            self.state.save()
        self._wake.set()
        return entry

    def deliver_due(self):
        now = time.time()
        with self.state.lock:
            due = [n for n in self.state.data["notifications"]
                   if not n["done"] and not n.get("gave_up") and n["next_at"] <= now]
        for entry in due:
            self.deliver(entry)

    def deliver(self, entry):
        request = urllib.request.Request(entry["url"], data=entry["body"].encode("ascii"),
                                         headers={"Content-Type": entry["content_type"]}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, body = response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError) as error:
            status, body = 0, f"{type(error).__name__}: {error}"
        with self.state.lock:
            entry["attempts"].append({"at": stamp(self.now()), "status": status, "body": body[:200]})
            if body == "success":  # exactly the 7 characters, nothing else (protocol §3.1)
                entry["done"] = True
                known = self.state.data["valid_notify_ids"].get(entry["notify_id"])
                if known:
                    known["acknowledged"] = True
            elif len(entry["attempts"]) > len(RETRY_SCHEDULE):
                entry["gave_up"] = True
            else:
                entry["next_at"] = time.time() + RETRY_SCHEDULE[len(entry["attempts"]) - 1] * self.time_factor
            self.state.save()

    def run_notifier(self):
        """The background loop of `serve`: closes trades at their expiry, delivers what is due."""
        while not self._stop.is_set():
            try:
                self.close_expired()
                self.deliver_due()
            except Exception as error:  # noqa: BLE001  keep delivering whatever one entry did
                print(f"sandbox notifier: {type(error).__name__}: {error}", flush=True)
            self._wake.wait(0.1)
            self._wake.clear()

    def stop(self):
        self._stop.set()
        self._wake.set()
