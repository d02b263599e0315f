"""The legacy MAPI gateway (protocol §8): `create_direct_pay_by_user` with MD5, its return and
notifications, and `notify_verify`."""
import base64
import secrets

from werkzeug.wrappers import Response

from sandbox import protocol
from sandbox.errors import AlipayError
from sandbox.timing import stamp
from sandbox.trades import check_amount, trade_id

# A return's notify_id validates for about a minute (legacy demo notes, protocol §8.3).
RETURN_NOTIFY_ID_SECONDS = 60


class LegacyMapi:
    """Mixed into Sandbox: needs the Ledger and the Notifier."""

    def legacy_pay(self, params):
        partner = self.state.data["partners"].get(params.get("partner", ""))
        if partner is None:
            raise AlipayError("ILLEGAL_PARTNER", "illegal partner", "ILLEGAL_PARTNER", "合作伙伴ID不存在")
        charset = params.get("_input_charset", "utf-8")
        if params.get("sign_type") != "MD5" or not protocol.md5_ok(params, partner["md5_key"], charset):
            raise AlipayError("ILLEGAL_SIGN", "illegal sign", "ILLEGAL_SIGN",
                              "签名不正确，待签名字符串：" + protocol.string_to_sign(params, {"sign", "sign_type"}))
        amount = check_amount(params.get("total_fee"))
        key = trade_id(params["partner"], params.get("out_trade_no"))
        with self.state.lock:
            trade = self.state.data["trades"].get(key) or {
                "id": key, "kind": "legacy", "partner": params["partner"], "out_trade_no": params["out_trade_no"],
                "status": "WAIT_BUYER_PAY", "created": stamp(self.now()), "trade_no": self.new_trade_no("0000"),
                "refund_fee": "0.00"}
            self.refuse_unless_waiting(trade)
            trade.update(subject=params.get("subject", ""), body=params.get("body", ""), total_amount=amount,
                         notify_url=params.get("notify_url"), return_url=params.get("return_url"), charset=charset,
                         seller_id=params["partner"])
            self.state.data["trades"][key] = trade
            self.state.save()
        return Response(status=302, headers={"Location": f"/cashier/{key}"})

    def legacy_fields(self, trade, notify_id):
        return {"notify_time": stamp(self.now()), "notify_type": "trade_status_sync", "notify_id": notify_id,
                "out_trade_no": trade["out_trade_no"], "subject": trade["subject"], "body": trade.get("body", ""),
                "payment_type": "1", "trade_no": trade["trade_no"], "trade_status": trade["status"],
                "seller_id": trade["partner"], "buyer_id": trade.get("buyer_id", ""),
                "total_fee": trade["total_amount"], "gmt_create": trade["created"],
                "gmt_payment": trade.get("gmt_payment", ""), "is_total_fee_adjust": "N", "use_coupon": "N"}

    def legacy_signed(self, trade, fields):
        key = self.state.data["partners"][trade["partner"]]["md5_key"]
        fields = {k: v for k, v in fields.items() if v}
        fields["sign"] = protocol.md5_sign(fields, key, trade["charset"])
        fields["sign_type"] = "MD5"
        return fields

    def legacy_return(self, trade):
        """Return parameters; the notify_id is one that carries `/` and `+`, and arrives
        percent-encoded twice: after one decode the merchant holds (and MD5 covers) `%2F`, and
        passes that on to notify_verify as is (protocol §8.3)."""
        notify_id = self.new_legacy_notify_id(trade["partner"], seconds=RETURN_NOTIFY_ID_SECONDS, for_return=True)
        fields = dict(self.legacy_fields(trade, protocol.percent_encode(notify_id)), is_success="T",
                      exterface="create_direct_pay_by_user")
        return self.legacy_signed(trade, fields)

    def new_legacy_notify_id(self, partner, seconds=None, for_return=False):
        """Notification ids look like the legacy documentation's (hex); return ids are base64
        text with `/` and `+` in it, like the documentation's return example."""
        if for_return:
            raw = base64.b64encode(secrets.token_bytes(45)).decode()
            notify_id = raw[:20] + "/" + raw[20:40] + "+" + raw[40:]
        else:
            notify_id = secrets.token_hex(18)[:35]
        with self.state.lock:
            self.state.data["valid_notify_ids"][notify_id] = {
                "partner": partner, "acknowledged": False,
                "expires": self.now().timestamp() + seconds if seconds else None}
        return notify_id

    def notify_verify(self, params):
        with self.state.lock:
            known = self.state.data["valid_notify_ids"].get(params.get("notify_id", ""))
        ok = (known is not None and known["partner"] == params.get("partner") and not known["acknowledged"]
              and (known.get("expires") is None or self.now().timestamp() < known["expires"]))
        return Response("true" if ok else "false", mimetype="text/plain")
