"""Signed pay requests: page / wap (URL or form), app (order string), legacy MD5 link (§2.4, §8.1)."""
import html
import json
from dataclasses import dataclass
from typing import Optional

from .money import beijing_timestamp, format_amount
from .signing import LocalKeySigner, Signer, md5_sign, sign_params

# product -> (method, product_code), protocol §2.4
PRODUCTS = {
    "page": ("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
    "wap": ("alipay.trade.wap.pay", "QUICK_WAP_WAY"),
    "app": ("alipay.trade.app.pay", "QUICK_MSECURITY_PAY"),
}


@dataclass(frozen=True)
class AppCredentials:
    """What signs a request as the merchant's app. Key objects or a Signer, never PEM text.

    Give either `private_key` (signed here) or `signer` (a signing.Signer, e.g. one whose key
    never leaves AWS KMS); everything that signs goes through `signer`.
    """
    app_id: str
    private_key: object = None
    sign_type: str = "RSA2"
    charset: str = "utf-8"
    app_cert_sn: Optional[str] = None          # cert mode (§6)
    alipay_root_cert_sn: Optional[str] = None
    signer: Optional[Signer] = None

    def __post_init__(self):
        if self.signer is None:
            if self.private_key is None:
                raise TypeError("AppCredentials needs a private_key or a signer")
            object.__setattr__(self, "signer", LocalKeySigner(self.private_key))


def biz_json(fields):
    """biz_content as compact JSON, UTF-8 kept; built once, then signed and sent as is (§2.2)."""
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def signed_request(credentials, method, biz_content, now=None, **extra):
    """Every parameter of a gateway request, `sign` last. Empty values are never sent (§2.2)."""
    params = {
        "app_id": credentials.app_id,
        "method": method,
        "format": "JSON",
        "charset": credentials.charset,
        "sign_type": credentials.sign_type,
        "timestamp": beijing_timestamp(now),
        "version": "1.0",
        "app_cert_sn": credentials.app_cert_sn,
        "alipay_root_cert_sn": credentials.alipay_root_cert_sn,
        "biz_content": biz_content if isinstance(biz_content, str) else biz_json(biz_content),
        **extra,
    }
    params = {key: value for key, value in sorted(params.items()) if value not in (None, "")}
    params["sign"] = sign_params(params, credentials.signer, credentials.sign_type, credentials.charset)
    return params


def form_encode(params, charset="utf-8"):
    """`k=v&...` with every value form-encoded exactly once (space -> +), in the given order."""
    return "&".join(f"{form_quote(key)}={form_quote(value, charset)}" for key, value in params.items())


_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
_QUOTED = [chr(byte) if chr(byte) in _UNRESERVED else "+" if byte == 0x20 else f"%{byte:02X}" for byte in range(256)]


def form_quote(text, charset="utf-8"):
    """What urllib's `quote_plus(text, encoding=charset)` gives, at twice its speed: one table
    lookup per byte in C rather than a Python step (a signature and biz_content are long)."""
    if not text.rstrip(_UNRESERVED):
        return text
    return "".join(map(_QUOTED.__getitem__, text.encode(charset)))


def gateway_url(gateway, params, charset="utf-8"):
    return f"{gateway}?{form_encode(params, charset)}"


def auto_submit_form(gateway, params):
    """An HTML form that posts every parameter to the gateway as soon as it loads."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(key)}" value="{html.escape(value)}">'
        for key, value in params.items())
    action = html.escape(f"{gateway}?charset={params.get('charset', 'utf-8')}")
    return (f'<form id="alipay_submit" name="alipay_submit" action="{action}" method="POST">{inputs}'
            '<input type="submit" value="Pay with Alipay" style="display:none"></form>'
            '<script>document.forms["alipay_submit"].submit();</script>')


def trade_biz(product, out_trade_no, total_amount, subject, body=None, timeout_express=None,
              passback_params=None, quit_url=None, time_expire=None):
    """The business fields of a page / wap / app pay request (§2.5). `time_expire` (an aware
    datetime) is sent as Beijing `yyyy-MM-dd HH:mm:ss`: an absolute deadline, so a link signed
    again later still expires when the order does."""
    fields = {
        "out_trade_no": out_trade_no,
        "total_amount": format_amount(total_amount),
        "subject": subject,
        "product_code": PRODUCTS[product][1],
        "body": body,
        "timeout_express": timeout_express,
        "time_expire": beijing_timestamp(time_expire) if time_expire else None,
        "passback_params": passback_params,
        "quit_url": quit_url if product == "wap" else None,
    }
    return {key: value for key, value in fields.items() if value not in (None, "")}


def pay_request(credentials, product, biz, notify_url=None, return_url=None, now=None):
    """Signed parameters of a page, wap or app pay request."""
    method = PRODUCTS[product][0]
    extra = {"notify_url": notify_url}
    if product != "app":  # the app SDK has no browser to return (§2.4)
        extra["return_url"] = return_url
    return signed_request(credentials, method, biz, now=now, **extra)


def app_order_string(params, charset="utf-8"):
    """What Android `PayTask.payV2` / iOS `payOrder` take: the signed pairs form-encoded once."""
    return form_encode(params, charset)


def legacy_pay_params(partner, md5_key, out_trade_no, subject, total_fee, notify_url=None,
                      return_url=None, body=None, charset="utf-8"):
    """A create_direct_pay_by_user request for the MAPI gateway, MD5-signed (§8)."""
    params = {
        "service": "create_direct_pay_by_user",
        "partner": partner,
        "_input_charset": charset,
        "notify_url": notify_url,
        "return_url": return_url,
        "out_trade_no": out_trade_no,
        "subject": subject,
        "payment_type": "1",
        "total_fee": format_amount(total_fee),
        "seller_id": partner,
        "body": body,
    }
    params = {key: value for key, value in sorted(params.items()) if value not in (None, "")}
    params["sign"] = md5_sign(params, md5_key, charset)
    params["sign_type"] = "MD5"
    return params
