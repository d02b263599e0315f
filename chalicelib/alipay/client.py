"""Server-to-gateway calls (§2.4, §5): a signed form POST, a verified answer.

`10000` answers and `40004` business failures come back as a GatewayResponse (a business failure
such as ACQ.TRADE_NOT_EXIST is information, not an error). `20000` means the outcome is unknown:
the same request (same parameters, same signature) is sent once more, then GatewayUnknown.
No answer in time is GatewayUnknown too; any other answer, or one we cannot verify, GatewayError.
"""
import time

import urllib3

from . import aes, gateway, http
from .errors import GatewayError, GatewayRefused, GatewayUnreachable, InvalidSignature
from .money import beijing_timestamp
from .pay import biz_json, form_encode, signed_request

SUCCESS, BUSINESS_FAILED, UNKNOWN, CONFIRMING = "10000", "40004", "20000", "10003"
NOT_PROCESSED = ("40001", "40002", "40006")  # missing or invalid parameters, permissions (§5.3)
DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT = 2.0, 8.0
REFUND_SPACING_SECONDS = 3.0  # Alipay asks for 3 s between refund calls on one trade (§3.6)


class GatewayUnknown(GatewayUnreachable):
    """The gateway may or may not have acted: ask again later (query) with the same parameters."""


class GatewayClient:
    def __init__(self, gateway_url, credentials, alipay_keys, alipay_cert_sn=None, aes_key=None,
                 time_left=None, read_timeout=DEFAULT_READ_TIMEOUT, observe=None):
        self.gateway_url = gateway_url
        self.credentials = credentials
        self.alipay_keys = alipay_keys
        self.alipay_cert_sn = alipay_cert_sn
        self.aes_key = aes_key
        self.time_left = time_left or (lambda: 30.0)  # seconds the caller may still spend
        self.read_timeout = read_timeout
        self.observe = observe or (lambda method, code, milliseconds: None)  # (method, code, ms) per HTTP call

    def call(self, method, biz, read_timeout=None, connect_timeout=None, answers=(SUCCESS, BUSINESS_FAILED), **extra):
        """Any gateway method: the verified response node's fields, for the codes in `answers`."""
        read_timeout = read_timeout or self.read_timeout
        content = biz if isinstance(biz, str) else biz_json(biz)
        if self.aes_key is not None:
            content = aes.encrypt(self.aes_key, content)
            extra["encrypt_type"] = "AES"
        params = signed_request(self.credentials, method, content, **extra)
        body = form_encode(params, self.credentials.charset).encode("ascii")
        response = self._post(method, body, read_timeout, connect_timeout)
        if response.code == UNKNOWN:
            response = self._post(method, body, read_timeout, connect_timeout)  # the very same request, once
            if response.code == UNKNOWN:
                raise GatewayUnknown(f"{method}: 20000 {response.fields.get('sub_code')} twice")
        if response.code not in answers:
            # Never sub_msg here: for isv.invalid-signature it holds the gateway's string-to-sign.
            message = f"{method}: {response.code} {response.sub_code}"
            if response.code in NOT_PROCESSED:
                raise GatewayRefused(message, response.code, response.sub_code)
            raise GatewayError(message)
        return response

    def _post(self, method, body, read_timeout, connect_timeout=None):
        started, code = time.perf_counter(), "no_answer"
        try:
            response = self._exchange(method, body, read_timeout, connect_timeout)
            code = response.code or "none"
            return response
        except InvalidSignature:
            code = "bad_signature"
            raise
        except GatewayUnknown:
            code = "no_answer"
            raise
        except GatewayError:
            code = "unreadable"
            raise
        finally:
            self.observe(method, code, (time.perf_counter() - started) * 1000)

    def _exchange(self, method, body, read_timeout, connect_timeout):
        budget = self.time_left() - 0.5  # leave time to record the outcome
        if budget <= 0.2:
            raise GatewayUnknown(f"{method}: no time left to call the gateway")
        connect = min(connect_timeout or DEFAULT_CONNECT_TIMEOUT, budget / 2)
        read = max(0.1, min(read_timeout, budget - connect))
        charset = self.credentials.charset
        try:
            answer = http.pool().request(
                "POST", self.gateway_url, body=body, redirect=False, retries=False,
                headers={"Content-Type": f"application/x-www-form-urlencoded;charset={charset}"},
                timeout=urllib3.Timeout(connect=connect, read=read))
        except urllib3.exceptions.HTTPError as error:
            raise GatewayUnknown(f"{method}: {type(error).__name__}") from None
        if answer.status >= 500:
            raise GatewayUnknown(f"{method}: HTTP {answer.status}")
        text = _decode(answer.data, answer.headers.get("Content-Type", ""), charset)
        return gateway.verify_response(text, method, self.alipay_keys, self.credentials.sign_type, charset,
                                       aes_key=self.aes_key, alipay_cert_sn=self.alipay_cert_sn)

    # ---- the trade methods --------------------------------------------------------------

    def precreate(self, out_trade_no, total_amount, subject, notify_url=None, timeout_express=None,
                  time_expire=None):
        biz = {"out_trade_no": out_trade_no, "total_amount": total_amount, "subject": subject}
        if timeout_express:
            biz["timeout_express"] = timeout_express
        if time_expire:
            biz["time_expire"] = beijing_timestamp(time_expire)  # absolute (contract: expiry as data)
        return self.call("alipay.trade.precreate", biz, notify_url=notify_url)

    def query(self, out_trade_no, read_timeout=None, connect_timeout=None):
        return self.call("alipay.trade.query", {"out_trade_no": out_trade_no}, read_timeout=read_timeout,
                         connect_timeout=connect_timeout)

    def close(self, out_trade_no):
        return self.call("alipay.trade.close", {"out_trade_no": out_trade_no})

    def refund(self, out_trade_no, biz_content):
        """A refund request, its biz_content as stored (`refund_biz`): a resend repeats it byte
        for byte, which Alipay treats as the same refund (§3.6). The caller spaces refund calls
        of one trade REFUND_SPACING_SECONDS apart (the service claims each call in DynamoDB)."""
        return self.call("alipay.trade.refund", biz_content)

    def pay(self, out_trade_no, total_amount, subject, auth_code, time_expire=None, store_id=None, terminal_id=None,
            notify_url=None):
        """Face-to-face barcode payment (§3.7): 10000 paid, 10003 the buyer is confirming, 40004."""
        biz = {"out_trade_no": out_trade_no, "scene": "bar_code", "auth_code": auth_code,
               "product_code": "FACE_TO_FACE_PAYMENT", "total_amount": total_amount, "subject": subject,
               "store_id": store_id, "terminal_id": terminal_id,
               "time_expire": beijing_timestamp(time_expire) if time_expire else None}
        return self.call("alipay.trade.pay", {k: v for k, v in biz.items() if v}, notify_url=notify_url,
                         answers=(SUCCESS, CONFIRMING, BUSINESS_FAILED))

    def cancel(self, out_trade_no):
        """alipay.trade.cancel (§3.7): an unpaid trade is closed, a paid one refunded in full."""
        return self.call("alipay.trade.cancel", {"out_trade_no": out_trade_no})

    def refund_query(self, out_trade_no, out_request_no):
        return self.call("alipay.trade.fastpay.refund.query",
                         {"out_trade_no": out_trade_no, "out_request_no": out_request_no})


def refund_biz(out_trade_no, refund_amount, out_request_no, reason=None):
    biz = {"out_trade_no": out_trade_no, "refund_amount": refund_amount, "out_request_no": out_request_no}
    if reason:
        biz["refund_reason"] = reason
    return biz_json(biz)


def _decode(data, content_type, charset):
    """Gateway text: the charset its Content-Type names, else ours; GBK error pages happen."""
    named = content_type.lower().partition("charset=")[2].strip() or charset
    for codec in (named, charset, "gbk"):
        try:
            return data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            continue
    raise GatewayError("the gateway answer is in no charset we know")
