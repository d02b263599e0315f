"""What the buyer sees: the PC/H5 cashier, the QR page, the mobile SDK's app payment, and the
signed return to the merchant (protocol §4)."""
import html

from werkzeug.wrappers import Response

from sandbox import protocol
from sandbox.errors import AlipayError
from sandbox.gateway import sniff_charset
from sandbox.timing import stamp


class Cashier:
    """Mixed into Sandbox: needs the Ledger, the gateway's verify_request and self.signer."""

    def on_cashier(self, request, trade_id):
        trade = self.trade(trade_id)
        if not trade.get("buyer_acted") and trade["status"] == "WAIT_BUYER_PAY":
            with self.state.lock:  # from now on the trade exists for query and close (§3.5)
                trade["buyer_acted"] = True
                self.state.save()
        mobile = trade.get("method") == "alipay.trade.wap.pay"
        status = trade["status"]
        buttons = ("<form method=post action='/cashier/{0}/pay'><button id=pay type=submit>Pay</button></form>"
                   "<form method=post action='/cashier/{0}/cancel'><button id=cancel type=submit>Cancel</button>"
                   "</form>").format(html.escape(trade_id)) if status == "WAIT_BUYER_PAY" else ""
        return Response(
            "<!doctype html><html><head><meta charset=utf-8><title>Alipay sandbox cashier</title>"
            "<meta name=viewport content='width=device-width'></head><body>"
            f"<h1>Alipay sandbox {'H5' if mobile else 'PC'} cashier</h1>"
            f"<p id=subject>{html.escape(trade['subject'])}</p><p>Amount: <b id=amount>¥{trade['total_amount']}</b></p>"
            f"<p>Order <code id=out_trade_no>{html.escape(trade['out_trade_no'])}</code>: "
            f"<span id=status>{status}</span></p>{buttons}</body></html>", mimetype="text/html")

    def on_cashier_action(self, request, trade_id, action):
        trade = self.trade(trade_id)
        if action == "cancel":
            back = trade.get("quit_url")  # H5 only: the PC cashier has nowhere to send the buyer
            page = ("<p id=cancelled>Payment cancelled.</p>"
                    + (f"<a id=back href='{html.escape(back)}'>Back to the shop</a>" if back else ""))
            return Response(f"<!doctype html><meta charset=utf-8><title>Cancelled</title>{page}", mimetype="text/html")
        if action != "pay":
            return Response("unknown action", status=404)
        self.pay(trade)
        if trade["kind"] == "legacy":
            return self.redirect_back(trade["return_url"], self.legacy_return(trade), trade["charset"])
        if not trade.get("return_url"):
            return Response("<p id=paid>Paid.</p>", mimetype="text/html")
        return self.redirect_back(trade["return_url"], self.openapi_return(trade), trade["charset"])

    @staticmethod
    def redirect_back(url, params, charset):
        """Values percent-encoded in the trade's charset, as they were signed (§4.1)."""
        joiner = "&" if "?" in url else "?"
        return Response(status=302, headers={"Location": url + joiner + protocol.encode(params, charset)})

    def openapi_return(self, trade):
        params = {"charset": trade["charset"], "out_trade_no": trade["out_trade_no"],
                  "method": trade["method"] + ".return", "total_amount": trade["total_amount"],
                  "trade_no": trade["trade_no"], "auth_app_id": trade["app_id"], "version": "1.0",
                  "app_id": trade["app_id"], "sign_type": trade["sign_type"], "seller_id": trade["seller_id"],
                  "timestamp": stamp(self.now())}
        params["sign"] = protocol.rsa_sign(self.signer(trade["app_id"])[0],
                                           protocol.string_to_sign(params, {"sign", "sign_type"}),
                                           trade["sign_type"], trade["charset"])
        return params

    def on_app_pay(self, request):
        """What the mobile SDK does with an order string (§2.4, §4.2): pay or cancel."""
        form = protocol.decode(request.get_data(as_text=True))
        order_string = form.get("order_string", "")
        charset = sniff_charset(order_string) or "utf-8"
        try:
            params = protocol.decode(order_string, charset)
            app = self.verify_request(params)
            if params["method"] != "alipay.trade.app.pay":
                raise AlipayError("40002", "Invalid Arguments", "isv.invalid-method", "not an app payment")
            trade = self.trade_from_biz(app, params, "alipay.trade.app.pay")
        except (AlipayError, LookupError) as error:
            memo = error.fields["sub_msg"] if isinstance(error, AlipayError) else "字符集错误"
            return self.json({"resultStatus": "4000", "result": "", "memo": memo})
        if form.get("action", "pay") == "cancel":
            with self.state.lock:
                trade["buyer_acted"] = True
                self.state.save()
            return self.json({"resultStatus": "6001", "result": "", "memo": "用户中途取消"})
        self.pay(trade)
        content = {"code": "10000", "msg": "Success", "app_id": trade["app_id"], "auth_app_id": trade["app_id"],
                   "charset": trade["charset"], "timestamp": stamp(self.now()), "out_trade_no": trade["out_trade_no"],
                   "total_amount": trade["total_amount"], "trade_no": trade["trade_no"],
                   "seller_id": trade["seller_id"]}
        key, cert_sn = self.signer(trade["app_id"])
        answer = protocol.signed_response(key, "alipay.trade.app.pay", content, trade["sign_type"],
                                          trade["charset"], alipay_cert_sn=cert_sn)
        result = answer[:-1] + ',"sign_type":"%s"}' % trade["sign_type"]
        return self.json({"resultStatus": "9000", "result": result, "memo": ""})
