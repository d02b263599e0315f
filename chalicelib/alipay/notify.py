"""Notifications and returns: parse exactly once, verify over whatever arrived (§3.3, §4.1, §8.3)."""
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Optional
from urllib.parse import unquote_to_bytes

from .errors import InvalidAmount, MalformedMessage, MessageTooLarge
from .money import parse_reported_amount

MAX_BODY_BYTES = 64 * 1024
# Charsets Alipay names, and the codec that reads them. GB2312 is read as GBK, its superset,
# which decodes and re-encodes GB2312 bytes unchanged.
_CHARSET_FIELD = re.compile(rb"(?:^|&)charset=([^&]*)")
_INPUT_CHARSET_FIELD = re.compile(rb"(?:^|&)_input_charset=([^&]*)")  # legacy MAPI (§8)
_CODECS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "gb2312": "gbk"}


def codec_for(charset):
    codec = _CODECS.get((charset or "utf-8").strip().lower())
    if codec is None:
        raise MalformedMessage(f"unsupported charset {charset!r}")
    return codec


def parse_form(raw, max_bytes=MAX_BODY_BYTES):
    """Fields of an `application/x-www-form-urlencoded` body, and the codec its `charset` names.

    Split on `&` and the first `=`, `+` is a space, `%XX` a byte, decoded once (§3.3). The charset
    comes from the body's own `charset` (OpenAPI) or `_input_charset` (legacy) field, read as
    ASCII before anything else is decoded. Blank values are kept; a repeated key is an error.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > max_bytes:
        raise MessageTooLarge(f"body of {len(raw)} bytes is over {max_bytes}")
    if not raw.strip():
        raise MalformedMessage("empty body")
    named = _CHARSET_FIELD.search(raw) or _INPUT_CHARSET_FIELD.search(raw)
    try:
        codec = codec_for(_percent_decoded(named.group(1).replace(b"+", b" ")).decode("ascii") if named else "utf-8")
    except UnicodeDecodeError:
        raise MalformedMessage("charset is not ASCII") from None
    fields = {}
    # '+' becomes a space before percent-decoding, so that %2B stays a literal '+' (§3.3).
    for part in raw.replace(b"+", b" ").split(b"&"):
        if not part:
            continue
        key, sep, value = part.partition(b"=")
        if not sep or not key:
            raise MalformedMessage("a field without '=' or without a name")
        try:
            name, text = _percent_decoded(key).decode(codec), _percent_decoded(value).decode(codec)
        except UnicodeDecodeError:
            raise MalformedMessage(f"a field is not valid {codec}") from None
        if name in fields:
            raise MalformedMessage(f"field {name!r} is repeated")
        fields[name] = text
    return fields, codec


def _percent_decoded(raw):
    """Form bytes with their %XX escapes decoded ('+' is the caller's to have turned into a space)."""
    return unquote_to_bytes(raw) if b"%" in raw else raw


def fields_from_query(multi_value_params):
    """Fields of a query string already decoded by API Gateway (name -> list of values)."""
    fields = {}
    for name, values in (multi_value_params or {}).items():
        if len(values) != 1:
            raise MalformedMessage(f"field {name!r} is repeated")
        fields[name] = values[0]
    if not fields:
        raise MalformedMessage("no parameters")
    return fields


@dataclass(frozen=True)
class Notification:
    """A trade notification (OpenAPI or legacy), typed; `fields` keeps everything that arrived.
    A gateway answer read as a report (query, pay, cancel) names only what it carries."""
    fields: dict
    notify_id: Optional[str] = None
    app_id: Optional[str] = None
    out_trade_no: Optional[str] = None
    trade_no: Optional[str] = None
    trade_status: Optional[str] = None
    total_amount: Optional[Decimal] = None
    refund_fee: Optional[Decimal] = None
    out_biz_no: Optional[str] = None
    seller_id: Optional[str] = None
    buyer_id: Optional[str] = None
    gmt_payment: Optional[str] = None
    sign_type: Optional[str] = None

    @property
    def is_refund(self):
        """A TRADE_SUCCESS or TRADE_CLOSED carrying refund fields is a refund, not a payment (§3.6)."""
        return self.refund_fee is not None or bool(self.fields.get("gmt_refund"))


def read_notification(fields):
    """The typed view of verified fields. Legacy notifications carry `total_fee` (§8.3)."""
    def amount(name):
        value = fields.get(name)
        if not value:
            return None
        try:
            return parse_reported_amount(value)
        except InvalidAmount as error:
            raise MalformedMessage(f"{name}: {error}") from None

    return Notification(
        fields=dict(fields),
        notify_id=fields.get("notify_id") or None,
        app_id=fields.get("app_id") or None,
        out_trade_no=fields.get("out_trade_no") or None,
        trade_no=fields.get("trade_no") or None,
        trade_status=fields.get("trade_status") or None,
        total_amount=amount("total_amount") if fields.get("total_amount") else amount("total_fee"),
        refund_fee=amount("refund_fee"),
        out_biz_no=fields.get("out_biz_no") or None,
        seller_id=fields.get("seller_id") or None,
        buyer_id=fields.get("buyer_id") or fields.get("buyer_open_id") or None,
        gmt_payment=fields.get("gmt_payment") or None,
        sign_type=fields.get("sign_type") or None,
    )
