"""Alipay's asynchronous notification (contract, POST /alipay/notify): parse once, verify, check
the business fields, then apply it as a report."""
from dataclasses import dataclass

from chalicelib import metrics, orders
from chalicelib.alipay import http, legacy, notify, signing
from chalicelib.alipay.errors import GatewayUnreachable, InvalidSignature, MalformedMessage, MessageTooLarge
from chalicelib.errors import Unavailable
from chalicelib.service import log_event, reports
from chalicelib.service.views import order_state
from chalicelib.store import valid_out_trade_no

SUCCESS, FAILURE = "success", "failure"


@dataclass(frozen=True)
class NotifyAnswer:
    status: int
    body: str
    outcome: str


def handle(ctx, raw_body):
    """Alipay's notification -> NotifyAnswer. Unavailable propagates: the caller answers 503 and
    Alipay delivers again later."""
    try:
        fields, codec = notify.parse_form(raw_body or b"")
    except MessageTooLarge:
        return _answer(413, "body_too_large")
    except MalformedMessage as error:
        return _answer(400, "malformed", reason=str(error))
    merchant = ctx.merchant()
    try:
        if fields.get("sign_type") == "MD5":
            return _legacy(ctx, fields, codec, merchant)
        signing.verify_params(fields, merchant.alipay_keys, merchant.sign_type, codec)
        note = notify.read_notification(fields)
    except InvalidSignature as error:
        return _answer(400, "bad_signature", reason=str(error), out_trade_no=_loggable(fields.get("out_trade_no")))
    except MalformedMessage as error:
        return _answer(400, "malformed", reason=str(error))
    return _apply_verified(ctx, note, merchant, legacy=False)


def _legacy(ctx, fields, codec, merchant):
    """MD5 notifications (§8.3): the MD5 check, then notify_verify at the MAPI gateway."""
    if not merchant.legacy_enabled:
        raise InvalidSignature("MD5 notification but no md5_key is configured")
    signing.md5_verify(fields, merchant.md5_key, codec)
    note = notify.read_notification(fields)
    order, events = (ctx.store.get_order_and_events(note.out_trade_no) if valid_out_trade_no(note.out_trade_no)
                     else (None, []))
    if order is not None and order["product"] != "legacy":
        raise InvalidSignature("MD5 signature on an OpenAPI order")
    if any(event.get("notify_id") == note.notify_id and event.get("to") == note.trade_status for event in events):
        # Already applied: notify_verify would now say false (an id validates once).
        return _answer(200, "duplicate", out_trade_no=note.out_trade_no)
    url = legacy.notify_verify_url(ctx.settings.mapi_gateway, merchant.partner, note.notify_id or "")
    try:
        status, text = http.get_text(url)
    except GatewayUnreachable as error:
        raise Unavailable(f"notify_verify: {error}") from None
    if status != 200 or not legacy.notify_verify_says_true(text):
        return _answer(400, "notify_verify_false", out_trade_no=note.out_trade_no)
    return _apply_verified(ctx, note, merchant, legacy=True, order=order)


def _apply_verified(ctx, note, merchant, legacy, order=None):
    if not note.out_trade_no or not note.trade_status or not note.notify_id:
        return _answer(400, "malformed", reason="out_trade_no, trade_status and notify_id are required")
    if not valid_out_trade_no(note.out_trade_no):  # never ours: no key is built from it
        return _answer(422, "unknown_order", out_trade_no=_loggable(note.out_trade_no), stored=False)
    expected_app = merchant.partner if legacy else merchant.app_id
    claimed_app = note.fields.get("seller_id") if legacy else note.app_id
    if claimed_app != expected_app:
        return _refuse(ctx, note, "app_id_mismatch", reports.read_state(ctx, note.out_trade_no))
    if merchant.seller_id and not legacy and note.seller_id != merchant.seller_id:
        return _refuse(ctx, note, "seller_mismatch", reports.read_state(ctx, note.out_trade_no))
    if order is not None:
        state, guessed = order_state(order), False
    else:  # a write without a read, conditioned on the likely state (orders.likely_state)
        report = orders.Report(note.trade_status, note.total_amount)
        state, guessed = orders.likely_state(report, "legacy" if legacy else "page"), True
    kind, detail = reports.apply(ctx, note, "notify", state, guessed, legacy)
    if kind == reports.REFUSED:
        return _refuse(ctx, note, *detail)
    if kind == reports.SCHEME_MISMATCH:
        return _answer(400, kind, out_trade_no=note.out_trade_no)
    return _answer(200, kind if kind == reports.APPLIED else detail, out_trade_no=note.out_trade_no, change=detail)


def _refuse(ctx, note, reason, state):
    """A verified notification that contradicts the order: anomaly recorded, nothing changed.
    For an order we do not have (state None) it is logged, not stored."""
    if state is not None:
        reports.record_anomaly(ctx, note.out_trade_no, reason, "notify", state, note.notify_id)
    else:
        metrics.count("Anomalies", Reason=reason)
    return _answer(422, reason, out_trade_no=note.out_trade_no, notify_id=note.notify_id, stored=state is not None)


def _loggable(text):
    return text[:80] if isinstance(text, str) else None


def _answer(status, outcome, **details):
    metrics.count("Notifications", Outcome=outcome)
    log_event(event="notification", status=status, outcome=outcome, **details)
    return NotifyAnswer(status, SUCCESS if status == 200 else FAILURE, outcome)
