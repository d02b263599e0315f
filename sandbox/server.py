"""A local Alipay for the pay -> return -> notify loop, offline.

It verifies every request as Alipay does (the app's registered public key, Beijing timestamp,
app_id), shows a cashier, sends the browser back with signed parameters, and posts signed
notifications, retried on Alipay's schedule (scaled by a time factor) until one is answered with
exactly `success`. The legacy MAPI gateway (MD5) works the same way, with `notify_verify`.
"""
import datetime
import html
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal, InvalidOperation

from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox import protocol
from sandbox.state import State

BEIJING = datetime.timezone(datetime.timedelta(hours=8))
RETRY_SCHEDULE = [4 * 60, 10 * 60, 10 * 60, 3600, 2 * 3600, 6 * 3600, 15 * 3600]  # protocol §3.1
TIMESTAMP_TOLERANCE = datetime.timedelta(minutes=15)
SERVER_METHODS = {"alipay.trade.precreate": "do_precreate", "alipay.trade.query": "do_query",
                  "alipay.trade.close": "do_close", "alipay.trade.refund": "do_refund",
                  "alipay.trade.fastpay.refund.query": "do_refund_query"}
PRODUCT_CODES = {"alipay.trade.precreate": "FACE_TO_FACE_PAYMENT", "alipay.trade.page.pay": "FAST_INSTANT_TRADE_PAY", "alipay.trade.wap.pay": "QUICK_WAP_WAY",
                 "alipay.trade.app.pay": "QUICK_MSECURITY_PAY"}
DEFAULT_SELLER = "2088102177649450"


def beijing_now():
    return datetime.datetime.now(BEIJING)


def stamp(moment=None, millis=False):
    moment = moment or beijing_now()
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text + f".{moment.microsecond // 1000:03d}" if millis else text


class AlipayError(Exception):
    def __init__(self, code, msg, sub_code, sub_msg):
        super().__init__(sub_msg)
        self.fields = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


class Sandbox:
    def __init__(self, state_path=None, time_factor=1.0, public_url="http://127.0.0.1:8001"):
        self.state = State(state_path)
        self.time_factor = time_factor
        self.public_url = public_url
        self.urls = Map([
            Rule("/gateway.do", endpoint="gateway", methods=["GET", "POST"]),
            Rule("/cashier/<trade_id>", endpoint="cashier", methods=["GET"]),
            Rule("/cashier/<trade_id>/<action>", endpoint="cashier_action", methods=["POST"]),
            Rule("/app/pay", endpoint="app_pay", methods=["POST"]),
            Rule("/qr/<trade_id>", endpoint="cashier", methods=["GET"]),
            Rule("/sandbox/switches", endpoint="switches", methods=["POST"]),
            Rule("/sandbox/alipay_public_key", endpoint="alipay_public_key", methods=["GET"]),
            Rule("/sandbox/apps", endpoint="register_app", methods=["POST"]),
            Rule("/sandbox/partners", endpoint="register_partner", methods=["POST"]),
            Rule("/sandbox/trades", endpoint="trades", methods=["GET"]),
            Rule("/sandbox/notifications", endpoint="notifications", methods=["GET"]),
            Rule("/sandbox/notifications.html", endpoint="notifications_page", methods=["GET"]),
            Rule("/sandbox/trigger", endpoint="trigger", methods=["POST"]),
            Rule("/sandbox/reset", endpoint="reset", methods=["POST"]),
            Rule("/", endpoint="index", methods=["GET"]),
        ])
        self._stop = threading.Event()
        self._wake = threading.Event()

    # ---- WSGI ----------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        request = Request(environ)
        adapter = self.urls.bind_to_environ(environ)
        try:
            endpoint, values = adapter.match()
            response = getattr(self, "on_" + endpoint)(request, **values)
        except AlipayError as error:
            response = self.error_page(error.fields)
        except Exception as error:  # noqa: BLE001  a dev tool: show what happened
            from werkzeug.exceptions import HTTPException
            if isinstance(error, HTTPException):
                response = error
            else:
                response = Response(f"sandbox error: {type(error).__name__}: {error}", status=500)
        return response(environ, start_response)

    @property
    def alipay_key(self):
        return self.state.alipay_key

    # ---- admin API -----------------------------------------------------------------------

    def on_index(self, request):
        return Response("<h1>Alipay sandbox</h1><p><a href='/sandbox/notifications.html'>notifications</a></p>",
                        mimetype="text/html")

    def on_alipay_public_key(self, request):
        return Response(protocol.public_key_line(self.alipay_key), mimetype="text/plain")

    def on_register_app(self, request):
        body = request.get_json(force=True)
        protocol.public_key_from_text(body["public_key"])  # refuse what cannot be used
        with self.state.lock:
            self.state.data["apps"][body["app_id"]] = {"public_key": body["public_key"],
                                                       "seller_id": body.get("seller_id", DEFAULT_SELLER)}
            self.state.save()
        return self.json({"app_id": body["app_id"], "alipay_public_key": protocol.public_key_line(self.alipay_key)})

    def on_register_partner(self, request):
        body = request.get_json(force=True)
        with self.state.lock:
            self.state.data["partners"][body["partner"]] = {"md5_key": body["md5_key"]}
            self.state.save()
        return self.json({"partner": body["partner"]})

    def on_trades(self, request):
        return self.json(self.state.data["trades"])

    def on_notifications(self, request):
        return self.json(self.state.data["notifications"])

    def on_notifications_page(self, request):
        rows = "".join(
            f"<tr><td>{html.escape(n['id'])}</td><td>{html.escape(n['out_trade_no'])}</td>"
            f"<td>{html.escape(n['label'])}</td><td>{len(n['attempts'])}</td>"
            f"<td>{'delivered' if n['done'] else 'gave up' if n.get('gave_up') else 'pending'}</td>"
            f"<td>{html.escape('; '.join(str(a['status']) + ' ' + a['body'][:20] for a in n['attempts']))}</td></tr>"
            for n in self.state.data["notifications"])
        return Response("<!doctype html><meta charset=utf-8><title>Sandbox notifications</title>"
                        "<h1>Notifications</h1><table border=1><tr><th>id</th><th>out_trade_no</th><th>what</th>"
                        f"<th>attempts</th><th>state</th><th>answers</th></tr>{rows}</table>", mimetype="text/html")

    def on_reset(self, request):
        self.state.reset()
        return self.json({"reset": True})

    def on_trigger(self, request):
        body = request.get_json(force=True)
        return self.json(self.trigger(body.pop("scenario"), body.pop("out_trade_no"), **body))

    # ---- the OpenAPI / MAPI gateway -------------------------------------------------------

    def on_gateway(self, request):
        params = dict(request.args)
        charset = params.get("charset") or params.get("_input_charset") or "utf-8"
        if request.method == "POST":
            form = protocol.decode(request.get_data(as_text=False).decode("ascii", "replace"), charset)
            params.update(form)
        if params.get("service") == "notify_verify":
            return self.notify_verify(params)
        if params.get("service") == "create_direct_pay_by_user":
            return self.legacy_pay(params)
        return self.open_trade(params, request)

    def verify_request(self, params):
        """Alipay's checks of a signed OpenAPI request; AlipayError with Alipay's codes."""
        app = self.state.data["apps"].get(params.get("app_id", ""))
        if app is None:
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-app-id", "无效的AppID参数")
        for name in ("method", "charset", "sign_type", "sign", "timestamp", "version"):
            if not params.get(name):
                raise AlipayError("40001", "Missing Required Arguments", f"isv.missing-{name}", f"缺少{name}参数")
        if params["sign_type"] not in protocol.HASHES:
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-signature-type", "无效的签名类型")
        text = protocol.string_to_sign(params, {"sign"})
        key = protocol.public_key_from_text(app["public_key"])
        if not protocol.rsa_verify(key, text, params["sign"], params["sign_type"], params["charset"]):
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-signature",
                              f"验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{text}")
        try:
            sent = datetime.datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
        except ValueError:
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-timestamp", "非法的时间戳参数") from None
        if abs(beijing_now() - sent) > TIMESTAMP_TOLERANCE:
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-timestamp",
                              f"时间戳与支付宝网关时间（北京时间 {stamp()}）相差过大")
        return app

    def open_trade(self, params, request):
        if params.get("method") in SERVER_METHODS:
            return self.server_call(params)
        app = self.verify_request(params)
        method = params["method"]
        if method not in ("alipay.trade.page.pay", "alipay.trade.wap.pay"):
            raise AlipayError("40004", "Business Failed", "isv.invalid-method", f"{method} is not served here")
        trade = self.trade_from_biz(app, params, method)
        return Response(status=302, headers={"Location": f"/cashier/{trade['id']}"})

    def trade_from_biz(self, app, params, method):
        try:
            biz = json.loads(params.get("biz_content") or "")
        except ValueError:
            raise AlipayError("40002", "Invalid Arguments", "isv.invalid-biz-content", "biz_content 不是 JSON") from None
        if biz.get("product_code") != PRODUCT_CODES[method]:
            raise AlipayError("40004", "Business Failed", "ACQ.INVALID_PARAMETER", "product_code 不匹配")
        amount = check_amount(biz.get("total_amount"))
        out_trade_no = biz.get("out_trade_no") or ""
        trade_id = f"{params['app_id']}-{out_trade_no}"
        with self.state.lock:
            trade = self.state.data["trades"].get(trade_id)
            if trade and trade["total_amount"] != amount:
                raise AlipayError("40004", "Business Failed", "ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            if trade and trade["status"] != "WAIT_BUYER_PAY":
                raise AlipayError("40004", "Business Failed", "ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
            if trade is None:
                trade = {"id": trade_id, "kind": "openapi", "app_id": params["app_id"], "out_trade_no": out_trade_no,
                         "seller_id": app["seller_id"], "status": "WAIT_BUYER_PAY", "created": stamp(),
                         "trade_no": beijing_now().strftime("%Y%m%d") + "2200" + secrets.token_hex(8),
                         "refund_fee": "0.00"}
            trade.update(method=method, subject=biz.get("subject", ""), total_amount=amount,
                         notify_url=params.get("notify_url"), return_url=params.get("return_url"),
                         quit_url=biz.get("quit_url"), passback_params=biz.get("passback_params"),
                         charset=params["charset"], sign_type=params["sign_type"])
            self.state.data["trades"][trade_id] = trade
            self.state.save()
        return trade

    # ---- the cashier -----------------------------------------------------------------------

    def on_cashier(self, request, trade_id):
        trade = self.trade(trade_id)
        if not trade.get("buyer_acted"):  # from now on the trade exists for query and close (§3.5)
            with self.state.lock:
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
        if trade["status"] != "WAIT_BUYER_PAY":
            raise AlipayError("40004", "Business Failed", "ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
        self.pay(trade)
        if trade["kind"] == "legacy":
            return self.redirect_back(trade["return_url"], self.legacy_return(trade))
        if not trade.get("return_url"):
            return Response("<p id=paid>Paid.</p>", mimetype="text/html")
        return self.redirect_back(trade["return_url"], self.openapi_return(trade))

    def pay(self, trade, status="TRADE_SUCCESS"):
        with self.state.lock:
            trade.update(status="TRADE_FINISHED" if trade["kind"] == "legacy" else status, gmt_payment=stamp(),
                         buyer_id="2088102177846880", buyer_acted=True)
            self.state.save()
        self.queue(trade, self.notification(trade), "payment", delay=trade.pop("notify_delay", 0))

    @staticmethod
    def redirect_back(url, params):
        joiner = "&" if "?" in url else "?"
        return Response(status=302, headers={"Location": url + joiner + protocol.encode(params)})

    def openapi_return(self, trade):
        params = {"charset": trade["charset"], "out_trade_no": trade["out_trade_no"],
                  "method": trade["method"] + ".return", "total_amount": trade["total_amount"],
                  "trade_no": trade["trade_no"], "auth_app_id": trade["app_id"], "version": "1.0",
                  "app_id": trade["app_id"], "sign_type": trade["sign_type"], "seller_id": trade["seller_id"],
                  "timestamp": stamp()}
        params["sign"] = protocol.rsa_sign(self.alipay_key, protocol.string_to_sign(params, {"sign", "sign_type"}),
                                           trade["sign_type"], trade["charset"])
        return params

    # ---- server-to-gateway methods ---------------------------------------------------------

    def on_switches(self, request):
        """Make the next calls of a method misbehave: {"method", "fail_20000", "delay_seconds",
        "delay_count", "tamper"} (counts of calls affected)."""
        body = request.get_json(force=True)
        with self.state.lock:
            self.state.data.setdefault("switches", {})[body.pop("method")] = body
            self.state.save()
        return self.json({"switches": self.state.data["switches"]})

    def _switch(self, method, name):
        with self.state.lock:
            switch = self.state.data.get("switches", {}).get(method, {})
            if switch.get(name, 0) > 0:
                switch[name] -= 1
                self.state.save()
                return switch
        return None

    def server_call(self, params):
        method = params["method"]
        try:
            app = self.verify_request(params)
            if self._switch(method, "fail_20000"):
                raise AlipayError("20000", "Service Currently Unavailable", "ACQ.SYSTEM_ERROR", "系统繁忙")
            biz = json.loads(params.get("biz_content") or "{}")
            content = dict({"code": "10000", "msg": "Success"}, **getattr(self, SERVER_METHODS[method])(app, params, biz))
        except AlipayError as error:
            content = error.fields
        delayed = self._switch(method, "delay_count")
        if delayed:
            time.sleep(float(delayed.get("delay_seconds", 5)))  # the work is done; the answer is late
        node = method.replace(".", "_") + "_response"
        if content.get("code") == "40002":
            node = "error_response"
        text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        sign = protocol.rsa_sign(self.alipay_key, text, params.get("sign_type") or "RSA2")
        if self._switch(method, "tamper"):
            text = text.replace('"msg":"', '"msg":"x', 1)
        return Response('{"%s":%s,"sign":"%s"}' % (node, text, sign), mimetype="application/json",
                        content_type="application/json;charset=utf-8")

    def _server_trade(self, params, biz):
        trade = self.state.data["trades"].get(f"{params['app_id']}-{biz.get('out_trade_no', '')}")
        if trade is None or not trade.get("buyer_acted"):
            raise AlipayError("40004", "Business Failed", "ACQ.TRADE_NOT_EXIST", "交易不存在")
        return trade

    def do_precreate(self, app, params, biz):
        params = dict(params, biz_content=json.dumps(dict(biz, product_code="FACE_TO_FACE_PAYMENT")))
        trade = self.trade_from_biz(app, params, "alipay.trade.precreate")
        return {"out_trade_no": trade["out_trade_no"], "qr_code": f"{self.public_url}/qr/{trade['id']}"}

    def do_query(self, app, params, biz):
        trade = self._server_trade(params, biz)
        answer = {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
                  "buyer_logon_id": "buy***@sandbox.com", "trade_status": trade["status"],
                  "total_amount": trade["total_amount"], "buyer_pay_amount": trade["total_amount"],
                  "buyer_user_id": trade.get("buyer_id", "")}
        if trade.get("gmt_payment"):
            answer["send_pay_date"] = trade["gmt_payment"]
        return answer

    def do_close(self, app, params, biz):
        trade = self._server_trade(params, biz)
        if trade["status"] != "WAIT_BUYER_PAY":
            raise AlipayError("40004", "Business Failed", "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        with self.state.lock:
            trade["status"] = "TRADE_CLOSED"
            self.state.save()
        return {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"]}

    def do_refund(self, app, params, biz):
        trade = self._server_trade(params, biz)
        amount = Decimal(check_amount(biz.get("refund_amount")))
        out_request_no = biz.get("out_request_no") or trade["out_trade_no"]
        refunds = trade.setdefault("refunds", {})
        done = refunds.get(out_request_no)
        if done is not None:
            if Decimal(done) != amount:
                raise AlipayError("40004", "Business Failed", "ACQ.DISCORDANT_REPEAT_REQUEST", "不一致的请求")
            fund_change = "N"  # the same request again: already refunded, nothing moves
        else:
            if trade["status"] != "TRADE_SUCCESS":
                raise AlipayError("40004", "Business Failed", "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            if Decimal(trade.get("refund_fee", "0")) + amount > Decimal(trade["total_amount"]):
                raise AlipayError("40004", "Business Failed", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            with self.state.lock:
                refunds[out_request_no] = format(amount, ".2f")
            fee = Decimal(trade.get("refund_fee", "0")) + amount
            if fee >= Decimal(trade["total_amount"]):
                self.scenario_full_refund(trade, out_request_no)
            else:
                with self.state.lock:
                    trade["refund_fee"] = format(fee, ".2f")
                self.queue(trade, self.notification(
                    trade, "TRADE_SUCCESS", refund_fee=trade["refund_fee"], gmt_refund=stamp(millis=True),
                    out_biz_no=out_request_no), "partial refund")
            fund_change = "Y"
        self.state.save()
        return {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"], "fund_change": fund_change,
                "refund_fee": trade.get("refund_fee", "0.00"), "buyer_logon_id": "buy***@sandbox.com",
                "gmt_refund_pay": stamp()}

    def do_refund_query(self, app, params, biz):
        trade = self._server_trade(params, biz)
        out_request_no = biz.get("out_request_no") or trade["out_trade_no"]
        amount = trade.get("refunds", {}).get(out_request_no)
        answer = {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
                  "out_request_no": out_request_no}
        if amount is not None:  # an unknown refund answers 10000 without a refund_status
            answer.update(refund_status="REFUND_SUCCESS", refund_amount=amount, total_amount=trade["total_amount"])
        return answer

    # ---- app pay (what the mobile SDK does with the order string) ---------------------------

    def on_app_pay(self, request):
        form = protocol.decode(request.get_data(as_text=True))
        order_string = form.get("order_string", "")
        params = protocol.decode(order_string, "utf-8")
        try:
            app = self.verify_request(params)
            if params["method"] != "alipay.trade.app.pay":
                raise AlipayError("40004", "Business Failed", "isv.invalid-method", "not an app payment")
            trade = self.trade_from_biz(app, params, "alipay.trade.app.pay")
        except AlipayError as error:
            return self.json({"resultStatus": "4000", "result": "", "memo": error.fields["sub_msg"]})
        if form.get("action", "pay") == "cancel":
            return self.json({"resultStatus": "6001", "result": "", "memo": "用户中途取消"})
        self.pay(trade)
        content = {"code": "10000", "msg": "Success", "app_id": trade["app_id"], "auth_app_id": trade["app_id"],
                   "charset": trade["charset"], "timestamp": stamp(), "out_trade_no": trade["out_trade_no"],
                   "total_amount": trade["total_amount"], "trade_no": trade["trade_no"],
                   "seller_id": trade["seller_id"]}
        node = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        sign = protocol.rsa_sign(self.alipay_key, node, trade["sign_type"])
        result = '{"alipay_trade_app_pay_response":%s,"sign":"%s","sign_type":"%s"}' % (node, sign, trade["sign_type"])
        return self.json({"resultStatus": "9000", "result": result, "memo": ""})

    # ---- legacy MAPI -----------------------------------------------------------------------

    def legacy_pay(self, params):
        partner = self.state.data["partners"].get(params.get("partner", ""))
        if partner is None:
            raise AlipayError("ILLEGAL_PARTNER", "illegal partner", "ILLEGAL_PARTNER", "合作伙伴ID不存在")
        charset = params.get("_input_charset", "utf-8")
        if params.get("sign_type") != "MD5" or not protocol.md5_ok(params, partner["md5_key"], charset):
            raise AlipayError("ILLEGAL_SIGN", "illegal sign", "ILLEGAL_SIGN",
                              "签名不正确，待签名字符串：" + protocol.string_to_sign(params, {"sign", "sign_type"}))
        amount = check_amount(params.get("total_fee"))
        trade_id = f"{params['partner']}-{params.get('out_trade_no', '')}"
        with self.state.lock:
            trade = self.state.data["trades"].get(trade_id) or {
                "id": trade_id, "kind": "legacy", "partner": params["partner"], "out_trade_no": params["out_trade_no"],
                "status": "WAIT_BUYER_PAY", "created": stamp(),
                "trade_no": beijing_now().strftime("%Y%m%d") + "0000" + secrets.token_hex(8), "refund_fee": "0.00"}
            trade.update(subject=params.get("subject", ""), total_amount=amount, notify_url=params.get("notify_url"),
                         return_url=params.get("return_url"), charset=charset, seller_id=params["partner"])
            self.state.data["trades"][trade_id] = trade
            self.state.save()
        return Response(status=302, headers={"Location": f"/cashier/{trade_id}"})

    def legacy_fields(self, trade, notify_id):
        return {"notify_time": stamp(), "notify_type": "trade_status_sync", "notify_id": notify_id,
                "out_trade_no": trade["out_trade_no"], "subject": trade["subject"], "payment_type": "1",
                "trade_no": trade["trade_no"], "trade_status": trade["status"], "seller_id": trade["partner"],
                "buyer_id": trade.get("buyer_id", ""), "total_fee": trade["total_amount"],
                "gmt_create": trade["created"], "gmt_payment": trade.get("gmt_payment", ""),
                "is_total_fee_adjust": "N", "use_coupon": "N"}

    def legacy_signed(self, trade, fields):
        key = self.state.data["partners"][trade["partner"]]["md5_key"]
        fields = {k: v for k, v in fields.items() if v}
        fields["sign"] = protocol.md5_sign(fields, key, trade["charset"])
        fields["sign_type"] = "MD5"
        return fields

    def legacy_return(self, trade):
        notify_id = self.new_notify_id()
        fields = dict(self.legacy_fields(trade, notify_id), is_success="T", exterface="create_direct_pay_by_user")
        return self.legacy_signed(trade, fields)

    def notify_verify(self, params):
        with self.state.lock:
            known = self.state.data["valid_notify_ids"].get(params.get("notify_id", ""))
        ok = known is not None and known["partner"] == params.get("partner") and not known["acknowledged"]
        return Response("true" if ok else "false", mimetype="text/plain")

    def new_notify_id(self, partner=None):
        notify_id = secrets.token_hex(16)
        if partner:
            with self.state.lock:
                self.state.data["valid_notify_ids"][notify_id] = {"partner": partner, "acknowledged": False}
        return notify_id

    # ---- notifications ---------------------------------------------------------------------

    def notification_fields(self, trade, status=None, **extra):
        if trade["kind"] == "legacy":
            fields = self.legacy_fields(trade, self.new_notify_id(trade["partner"]))
            fields["trade_status"] = status or trade["status"]
            fields.update(extra)
            return fields
        amount = trade["total_amount"]
        fields = {"notify_time": stamp(), "notify_type": "trade_status_sync", "notify_id": self.new_notify_id(),
                  "app_id": trade["app_id"], "auth_app_id": trade["app_id"], "charset": trade["charset"],
                  "version": "1.0", "trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
                  "buyer_id": trade.get("buyer_id", ""), "buyer_logon_id": "buy***@sandbox.com",
                  "seller_id": trade["seller_id"], "seller_email": "seller@sandbox.com",
                  "trade_status": status or trade["status"], "total_amount": amount, "receipt_amount": amount,
                  "invoice_amount": amount, "buyer_pay_amount": amount, "point_amount": "0.00",
                  "subject": trade["subject"], "gmt_create": trade["created"],
                  "gmt_payment": trade.get("gmt_payment", ""), "passback_params": trade.get("passback_params") or "",
                  "fund_bill_list": json.dumps([{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}],
                                               separators=(",", ":"))}
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
        fields["sign"] = protocol.rsa_sign(key or self.alipay_key, protocol.string_to_sign(fields, {"sign", "sign_type"}),
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
            entry["attempts"].append({"at": stamp(), "status": status, "body": body[:200]})
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
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception as error:  # noqa: BLE001  keep delivering whatever one entry did
                print(f"sandbox notifier: {type(error).__name__}: {error}", flush=True)
            self._wake.wait(0.1)
            self._wake.clear()

    def stop(self):
        self._stop.set()
        self._wake.set()

    # ---- scenarios -------------------------------------------------------------------------

    def trigger(self, scenario, out_trade_no, **options):
        trade = self.find_trade(out_trade_no)
        handler = getattr(self, "scenario_" + scenario, None)
        if handler is None:
            raise AlipayError("40004", "Business Failed", "SANDBOX.UNKNOWN_SCENARIO", f"no scenario {scenario}")
        queued = handler(trade, **options)
        return {"scenario": scenario, "out_trade_no": out_trade_no,
                "queued": [q["id"] for q in (queued if isinstance(queued, list) else [queued]) if q]}

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
            trade["notify_delay"] = float(seconds)  # the payment's notification waits
            self.state.save()
            return []
        return self.queue(trade, self.notification(trade), "delayed", delay=float(seconds))

    def scenario_never_sent(self, trade):
        """From now on this trade's notifications are never sent (payment, refunds, anything)."""
        trade["suppress_notify"] = True
        self.state.save()
        return []

    def scenario_bad_signature(self, trade):
        from cryptography.hazmat.primitives.asymmetric import rsa
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.queue(trade, self.notification(self._paid(trade), key=stranger), "bad signature")

    def scenario_wrong_amount(self, trade):
        wrong = format(Decimal(trade["total_amount"]) + Decimal("1.00"), "f")
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

    def scenario_partial_refund(self, trade, refund_amount="1.00", out_request_no=None):
        fee = Decimal(trade.get("refund_fee", "0")) + Decimal(refund_amount)
        if fee >= Decimal(trade["total_amount"]):
            return self.scenario_full_refund(trade, out_request_no)
        with self.state.lock:
            trade["refund_fee"] = format(fee, ".2f")
        return self.queue(trade, self.notification(
            trade, "TRADE_SUCCESS", refund_fee=trade["refund_fee"], gmt_refund=stamp(millis=True),
            out_biz_no=out_request_no or "R" + secrets.token_hex(6)), "partial refund")

    def scenario_full_refund(self, trade, out_request_no=None):
        with self.state.lock:
            trade.update(refund_fee=trade["total_amount"], status="TRADE_CLOSED")
        now = stamp()
        return self.queue(trade, self.notification(
            trade, "TRADE_CLOSED", refund_fee=trade["total_amount"], gmt_refund=stamp(millis=True), gmt_close=now,
            out_biz_no=out_request_no or "R" + secrets.token_hex(6)), "full refund")

    # ---- helpers ---------------------------------------------------------------------------

    def trade(self, trade_id):
        trade = self.state.data["trades"].get(trade_id)
        if trade is None:
            raise AlipayError("40004", "Business Failed", "ACQ.TRADE_NOT_EXIST", "交易不存在")
        return trade

    def find_trade(self, out_trade_no):
        for trade in self.state.data["trades"].values():
            if trade["out_trade_no"] == out_trade_no:
                return trade
        raise AlipayError("40004", "Business Failed", "ACQ.TRADE_NOT_EXIST", f"交易不存在: {out_trade_no}")

    @staticmethod
    def json(data, status=200):
        return Response(json.dumps(data, ensure_ascii=False), status=status, mimetype="application/json")

    @staticmethod
    def error_page(fields):
        details = "".join(f"<dt>{k}</dt><dd class={k}>{html.escape(str(v))}</dd>" for k, v in fields.items())
        return Response("<!doctype html><meta charset=utf-8><title>Alipay error</title>"
                        f"<h1>支付宝 sandbox: error</h1><dl id=error>{details}</dl>", status=400, mimetype="text/html")


def check_amount(value):
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError):
        raise AlipayError("40004", "Business Failed", "ACQ.INVALID_PARAMETER", "金额无效") from None
    if amount.as_tuple().exponent < -2 or not Decimal("0.01") <= amount <= Decimal("100000000"):
        raise AlipayError("40004", "Business Failed", "ACQ.INVALID_PARAMETER", "金额无效")
    return value
