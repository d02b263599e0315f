"""The OpenAPI gateway (`gateway.do`): request checks as Alipay makes them (protocol §2), the
server-to-gateway methods (§5) and their answers, in the request's charset, signed over the
node text, with `alipay_cert_sn` in certificate mode (§6)."""
import base64
import html
import json
import socket
import time
from decimal import Decimal
from urllib.parse import parse_qsl

from werkzeug.wrappers import Response

from sandbox import certs, protocol, timing
from sandbox.barcode import LOST
from sandbox.errors import AlipayError, business, failure, invalid, missing
from sandbox.trades import check_amount, payment_fields, trade_id

SERVER_METHODS = {"alipay.trade.precreate": "do_precreate", "alipay.trade.query": "do_query",
                  "alipay.trade.close": "do_close", "alipay.trade.refund": "do_refund",
                  "alipay.trade.fastpay.refund.query": "do_refund_query",
                  "alipay.open.app.alipaycert.download": "do_alipaycert_download",
                  "alipay.trade.pay": "do_pay", "alipay.trade.cancel": "do_cancel"}
PAGE_METHODS = ("alipay.trade.page.pay", "alipay.trade.wap.pay")
CHARSETS = ("utf-8", "gbk", "gb2312")
TIMESTAMP_TOLERANCE = 15 * 60  # seconds; Alipay's own tolerance is not published (protocol §11)
# Required common parameters and their 40001 sub_codes, as the public list names them (§5.3).
REQUIRED = [("sign", "signature", "缺少签名参数"), ("sign_type", "signature-type", "缺少签名类型"),
            ("timestamp", "timestamp", "缺少时间戳参数"), ("version", "version", "缺少版本参数")]


def sniff_charset(*raw_parts):
    """`charset` (or MAPI's `_input_charset`) is ASCII: find it before decoding anything else
    (protocol §3.3, §5.2). None when absent."""
    for raw in raw_parts:
        for key, value in parse_qsl(raw, keep_blank_values=True, encoding="latin-1"):
            if key in ("charset", "_input_charset") and value:
                return value
    return None


def request_params(request):
    """Query and form body, each decoded once in the request's own charset (§2.1)."""
    query = request.environ.get("QUERY_STRING", "").encode("latin-1").decode("ascii", "replace")
    body = request.get_data(as_text=False).decode("ascii", "replace") if request.method == "POST" else ""
    charset = sniff_charset(query, body) or "utf-8"
    if charset.lower() not in CHARSETS:
        raise invalid("charset", "字符集错误")
    params = protocol.decode(query, charset)
    params.update(protocol.decode(body, charset))
    return params, charset


class Gateway:
    """Mixed into Sandbox: needs the Ledger, the Notifier, the cashier and the MAPI gateway."""

    def on_gateway(self, request):
        try:
            params, charset = request_params(request)
        except AlipayError as error:  # a charset it cannot decode: a server call still gets JSON
            method = request.args.get("method") or request.form.get("method")
            return self.render({}, "utf-8", None, error.fields) if method in SERVER_METHODS else \
                self.error_page(error.fields)
        if params.get("service") == "notify_verify":
            return self.notify_verify(params)
        if params.get("service") == "create_direct_pay_by_user":
            return self.legacy_pay(params)
        method = params.get("method")
        if method in SERVER_METHODS:
            return self.server_call(params, charset, request)
        if method in PAGE_METHODS:  # the buyer's browser: errors are pages, as at Alipay's cashier
            app = self.verify_request(params)
            trade = self.trade_from_biz(app, params, method)
            return Response(status=302, headers={"Location": f"/cashier/{trade['id']}"})
        # A missing or unknown method is a JSON answer, never a page (issue 11, departure 8).
        error = missing("method", "缺少方法名参数") if not method else invalid("method", "不存在的方法名")
        return self.render(params, charset, None, error.fields)

    # ---- the checks of a signed request --------------------------------------------------------

    def verify_request(self, params):
        """Alipay's checks of a signed OpenAPI request (§2.1, §2.2, §6); AlipayError with the
        codes of the public list."""
        if not params.get("app_id"):
            raise missing("app-id", "缺少AppID参数")
        app = self.state.data["apps"].get(params["app_id"])
        if app is None:
            raise invalid("app-id", "无效的AppID参数")
        for name, code, message in REQUIRED:
            if not params.get(name):
                raise missing(code, message)
        if params["sign_type"] not in protocol.HASHES:
            raise invalid("signature-type", "无效的签名类型")
        if app.get("cert_mode"):
            # The app's key is the one in the certificate named by app_cert_sn (§6).
            if params.get("app_cert_sn") != app["app_cert_sn"]:
                raise failure("40002", "isv.app-cert-not-exist", "应用公钥证书不存在")
            if params.get("alipay_root_cert_sn") != certs.root_cert_sn(self.state.pki["root_bundle"]):
                raise failure("40002", "isv.invalid-alipay-root-cert-sn", "无效支付宝根证书序列号")
        charset = params.get("charset") or "utf-8"
        text = protocol.string_to_sign(params, {"sign"})
        key = protocol.public_key_from_text(app["public_key"])
        if not protocol.rsa_verify(key, text, params["sign"], params["sign_type"], charset):
            # The string-to-sign is shown HTML-escaped, as Alipay shows it (&amp;, &quot;).
            raise invalid("signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为："
                          + html.escape(text))
        sent = timing.parse_stamp(params["timestamp"])
        if sent is None or abs((timing.real_now() - sent).total_seconds()) > TIMESTAMP_TOLERANCE:
            raise invalid("timestamp", "非法的时间戳参数")
        return app

    # ---- server-to-gateway calls ---------------------------------------------------------------

    def server_call(self, params, charset, request):
        method = params["method"]
        try:
            app = self.verify_request(params)
        except AlipayError as error:
            if error.fields["sub_code"] in ("isv.missing-app-id", "isv.invalid-app-id"):
                # Alipay cannot know whose key to sign with: an unsigned error_response.
                return self.render(params, charset, None, error.fields)
            # Every other refusal comes under the method's own node, signed (issue 11, departure 1).
            return self.render(params, charset, method, error.fields)
        if self.switch(method, "lost_count"):
            return self.lost(request, self.state.data["switches"][method].get("lost_as", "drop"))
        content = self.perform(app, params, method)
        if content.pop(LOST, False):  # the work is done, then the answer is lost (a barcode test code)
            return self.lost(request, "drop")
        delayed = self.switch(method, "delay_count")
        if delayed:
            time.sleep(float(delayed.get("delay_seconds", 5)))  # the work is done; the answer is late
        return self.render(params, charset, method, content, tamper=bool(self.switch(method, "tamper")))

    def perform(self, app, params, method):
        """The method's content, or the answer a switch chose (before or after the work)."""
        if self.switch(method, "fail_20000"):
            return failure("20000", "ACQ.SYSTEM_ERROR", "系统繁忙").fields
        chosen = self.switch(method, "answer_count")
        if chosen and not chosen.get("perform"):
            return self.chosen_answer(chosen)  # refused before anything happened
        try:
            biz = json.loads(params.get("biz_content") or "{}")
            handler = getattr(self, SERVER_METHODS[method])
            content = dict({"code": "10000", "msg": "Success"}, **handler(app, params, biz))
        except ValueError:
            content = business("ACQ.INVALID_PARAMETER", "biz_content 不是 JSON").fields
        except AlipayError as error:
            content = error.fields
        return self.chosen_answer(chosen) if chosen else content  # done, yet answered as a failure

    @staticmethod
    def chosen_answer(switch):
        return failure(str(switch.get("answer_code", "40004")), switch.get("answer_sub_code", "ACQ.SYSTEM_ERROR"),
                       switch.get("answer_sub_msg")).fields

    @staticmethod
    def lost(request, how):
        """The request never reaches Alipay's business: the caller sees the connection dropped
        without an answer, or a 504 from the gateway's front."""
        sock = request.environ.get("werkzeug.socket")
        if how == "drop" and sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return Response("<html><body><h1>504 Gateway Time-out</h1></body></html>", status=504, mimetype="text/html")

    def render(self, params, charset, method, content, tamper=False):
        """`{"<method>_response":{...},"alipay_cert_sn":"...","sign":"..."}` in the request's
        charset, signed over the node text's bytes in that charset (§5.1, §5.2). Without a
        method: an unsigned `error_response`."""
        if method is None:
            body = '{"error_response":%s}' % json.dumps(content, ensure_ascii=False, separators=(",", ":"))
        else:
            key, cert_sn = self.signer(params["app_id"])
            body = protocol.signed_response(key, method, content, params.get("sign_type") or "RSA2", charset,
                                            alipay_cert_sn=cert_sn)
            if tamper:
                body = body.replace('"msg":"', '"msg":"x', 1)
        return Response(body.encode(charset), content_type=f"application/json;charset={charset}")

    def switch(self, method, name):
        """Counts down a switch set with POST /sandbox/switches; the switch while it lasts."""
        with self.state.lock:
            switch = self.state.data["switches"].get(method, {})
            if switch.get(name, 0) > 0:
                switch[name] -= 1
                self.state.save()
                return switch
        return None

    # ---- the methods ---------------------------------------------------------------------------

    def server_trade(self, app_id, biz):
        trade = self.state.data["trades"].get(trade_id(app_id, biz.get("out_trade_no")))
        if trade is None or not trade.get("buyer_acted"):
            raise business("ACQ.TRADE_NOT_EXIST")  # the buyer never opened it (§3.5)
        self.expire_if_due(trade)
        return trade

    def do_precreate(self, app, params, biz):
        params = dict(params, biz_content=json.dumps(dict(biz, product_code="FACE_TO_FACE_PAYMENT")))
        trade = self.trade_from_biz(app, params, "alipay.trade.precreate")
        return {"out_trade_no": trade["out_trade_no"], "qr_code": f"{self.public_url}/qr/{trade['id']}"}

    def do_query(self, app, params, biz):
        trade = self.server_trade(params["app_id"], biz)
        answer = dict(payment_fields(trade), trade_status=trade["status"])
        if trade.get("gmt_payment"):
            answer.update(send_pay_date=trade["gmt_payment"], buyer_user_id=trade.get("buyer_id", ""))
        return answer

    def do_close(self, app, params, biz):
        trade = self.server_trade(params["app_id"], biz)
        if trade["status"] != "WAIT_BUYER_PAY":  # only a waiting trade closes (§5.3)
            raise business("ACQ.TRADE_STATUS_ERROR")
        self.close(trade)
        return {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"]}

    def do_refund(self, app, params, biz):
        trade = self.server_trade(params["app_id"], biz)
        amount = biz.get("refund_amount")
        out_request_no = biz.get("out_request_no")
        if not out_request_no:
            # Without out_request_no only the whole amount can be refunded (§3.6).
            if Decimal(check_amount(amount)) != Decimal(trade["total_amount"]):
                self.refuse_refund(trade)
                raise business("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
            out_request_no = trade["out_trade_no"]
        record, fund_change = self.refund(trade, amount, out_request_no, biz.get("refund_reason"))
        return {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
                "buyer_logon_id": "buy***@sandbox.com", "buyer_user_id": trade.get("buyer_id", ""),
                "fund_change": fund_change, "refund_fee": trade["refund_fee"],
                "gmt_refund_pay": record["gmt_refund_pay"]}  # the refund's own time, also when repeated

    def do_refund_query(self, app, params, biz):
        trade = self.server_trade(params["app_id"], biz)
        out_request_no = biz.get("out_request_no") or trade["out_trade_no"]
        record = trade.get("refunds", {}).get(out_request_no)
        answer = {"trade_no": trade["trade_no"], "out_trade_no": trade["out_trade_no"],
                  "out_request_no": out_request_no}
        if record is not None:  # an unknown refund answers 10000 without a refund_status
            answer.update(refund_status="REFUND_SUCCESS", refund_amount=record["amount"],
                          total_amount=trade["total_amount"], gmt_refund_pay=record["gmt_refund_pay"])
            if record.get("reason"):
                answer["refund_reason"] = record["reason"]
        return answer

    def do_alipaycert_download(self, app, params, biz):
        """An Alipay certificate by its SN, current or older (§6): base64 of the PEM."""
        found = self.state.pki["alipay_certs"].get(biz.get("alipay_cert_sn", ""))
        if found is None:
            raise business("CERT_NOT_EXIST", "证书不存在")
        return {"alipay_cert_content": base64.b64encode(found["cert"].encode()).decode()}
