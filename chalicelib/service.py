"""Use cases: create an order, read it, apply a notification, verify a return.

Routes call these and only these. They speak in plain values and the exceptions of
chalicelib.errors; app.py turns both into HTTP.
"""
import datetime
import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass

import boto3
from botocore.config import Config

from chalicelib import orders, settings as settings_module
from chalicelib.alipay import http, legacy, notify, pay, signing
from chalicelib.alipay.errors import (GatewayUnreachable, InvalidAmount, InvalidSignature, MalformedMessage,
                                      MessageTooLarge)
from chalicelib.alipay.money import format_amount, parse_amount, parse_beijing_time
from chalicelib.errors import IdempotencyConflict, InvalidRequest, NotFound, NotSupported, Unavailable
from chalicelib.merchant import MerchantSource
from chalicelib.store import ConditionFailed, OrderStore

log = logging.getLogger("chalice_alipay")
log.setLevel(logging.INFO)

_BOTO_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
_OUT_TRADE_NO = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_TIMEOUT_EXPRESS = re.compile(r"^([1-9][0-9]{0,4})([mhd])$")
_TIMEOUT_MINUTES = {"m": 1, "h": 60, "d": 1440}
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,64}$")
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
_OPTIONAL_TEXT = {"body": 128, "passback_params": 512, "quit_url": 400}


def log_event(**fields):
    """One JSON line: order number and outcome, never keys, tokens or signed strings."""
    log.info(json.dumps(fields, ensure_ascii=False, default=str, sort_keys=True))


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Backend:
    """Per-container wiring: AWS clients created lazily, once; the merchant secret's cache."""

    def __init__(self):
        self._clients = {}
        self.merchants = MerchantSource(lambda: self.client("secretsmanager"))

    def client(self, name):
        if name not in self._clients:
            self._clients[name] = boto3.client(name, config=_BOTO_CONFIG)
        return self._clients[name]


@dataclass(frozen=True)
class NotifyAnswer:
    status: int
    body: str
    outcome: str


SUCCESS, FAILURE = "success", "failure"


class OrderService:
    def __init__(self, backend, settings=None, clock=utc_now):
        self.backend = backend
        self.settings = settings or settings_module.load()
        self.clock = clock
        self.store = OrderStore(backend.client("dynamodb"), self.settings.orders_table)

    def merchant(self):
        return self.backend.merchants.get(self.settings.secret_id, self.settings.secret_ttl_seconds)

    def authorize(self, authorization_header):
        scheme, _, token = (authorization_header or "").partition(" ")
        return self.merchant().authorize(token.strip() if scheme.lower() == "bearer" else "")

    # ---- create ------------------------------------------------------------------------

    def create_order(self, actor, body, idempotency_key, base_url):
        """(http status, order view with payment): 201 new, 200 replay of the same request."""
        request = validate_create(body)
        if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
            raise InvalidRequest("Idempotency-Key must be 1-64 printable ASCII characters", "Idempotency-Key")
        merchant = self.merchant()
        if request["product"] == "legacy" and not merchant.legacy_enabled:
            raise NotSupported("the legacy product needs partner and md5_key in the secret", "product")
        if request["product"] == "qr":
            raise NotSupported("the qr product needs alipay.trade.precreate, not available yet", "product")
        request_hash = _request_hash(request)
        now = self.clock()
        epoch = int(now.timestamp())
        if idempotency_key:
            record = self.store.get_idempotency(actor, idempotency_key, epoch)
            if record:
                return self._replay(record["out_trade_no"], request_hash, merchant, base_url)
        out_trade_no = request.get("out_trade_no") or _new_out_trade_no(now)
        order = {
            "out_trade_no": out_trade_no, "status": orders.WAIT_BUYER_PAY, "product": request["product"],
            "subject": request["subject"], "total_amount": request["total_amount"], "refunded_amount": 0,
            "timeout_express": request["timeout_express"], "body": request.get("body"),
            "passback_params": request.get("passback_params"), "quit_url": request.get("quit_url"),
            "created_at": iso(now), "updated_at": iso(now), "actor": actor, "request_hash": request_hash,
            "version": 0,
        }
        idempotency = (actor, idempotency_key, request_hash, epoch + IDEMPOTENCY_TTL_SECONDS) if idempotency_key else None
        try:
            self.store.create_order(order, idempotency, now_epoch=epoch)
        except ConditionFailed:
            if idempotency_key:
                record = self.store.get_idempotency(actor, idempotency_key, epoch)
                if record:
                    return self._replay(record["out_trade_no"], request_hash, merchant, base_url)
            return self._replay(out_trade_no, request_hash, merchant, base_url)
        log_event(event="order_created", out_trade_no=out_trade_no, product=order["product"], actor=actor)
        stored = dict(order, total_amount=request["total_amount"], refunded_amount=0)
        return 201, self._with_payment(stored, merchant, base_url)

    def _replay(self, out_trade_no, request_hash, merchant, base_url):
        order = self.store.get_order(out_trade_no)
        if order is None:  # the key's order vanished: never silently make another
            raise IdempotencyConflict("the order this request names no longer exists")
        if order.get("request_hash") != request_hash:
            raise IdempotencyConflict(f"order {out_trade_no} exists with a different request",
                                      "out_trade_no")
        return 200, self._with_payment(order, merchant, base_url)

    def _with_payment(self, order, merchant, base_url):
        view = order_view(order, [])
        view["payment"] = self._payment(order, merchant, base_url)
        return view

    def _payment(self, order, merchant, base_url):
        notify_url = self.settings.notify_url or (f"{base_url}/alipay/notify" if base_url else None)
        return_url = f"{base_url}/alipay/return" if base_url else None
        product = order["product"]
        if product == "legacy":
            params = pay.legacy_pay_params(merchant.partner, merchant.md5_key, order["out_trade_no"],
                                           order["subject"], order["total_amount"], notify_url, return_url,
                                           body=order.get("body"))
            return {"url": pay.gateway_url(self.settings.mapi_gateway, params)}
        biz = pay.trade_biz(product, order["out_trade_no"], order["total_amount"], order["subject"],
                            body=order.get("body"), timeout_express=order.get("timeout_express"),
                            passback_params=order.get("passback_params"), quit_url=order.get("quit_url"))
        params = pay.pay_request(merchant.credentials, product, biz, notify_url, return_url, now=self.clock())
        if product == "app":
            return {"order_string": pay.app_order_string(params)}
        return {"url": pay.gateway_url(self.settings.gateway, params),
                "form": pay.auto_submit_form(self.settings.gateway, params)}

    # ---- read --------------------------------------------------------------------------

    def get_order(self, out_trade_no):
        order, events = self.store.get_order_and_events(_checked_out_trade_no(out_trade_no))
        if order is None:
            raise NotFound(f"no order {out_trade_no}")
        return order_view(order, events)

    def list_events(self, out_trade_no):
        order, events = self.store.get_order_and_events(_checked_out_trade_no(out_trade_no))
        if order is None:
            raise NotFound(f"no order {out_trade_no}")
        created = {"at": order["created_at"], "source": "api", "type": "created", "actor": order.get("actor"), "seq": 0}
        # seq is the order's version when the event happened: timestamps of racing writers may tie.
        trail = sorted([created] + events, key=lambda e: (int(e.get("seq", 0)), e["at"]))
        return [_plain(event) for event in trail]

    # ---- notifications -----------------------------------------------------------------

    def handle_notification(self, raw_body):
        """Alipay's asynchronous notification -> NotifyAnswer (contract, POST /alipay/notify).

        Unavailable propagates: the caller answers 503 and Alipay delivers again later.
        """
        try:
            fields, codec = notify.parse_form(raw_body or b"")
        except MessageTooLarge:
            return self._answer(413, "body_too_large")
        except MalformedMessage as error:
            return self._answer(400, "malformed", reason=str(error))
        merchant = self.merchant()
        try:
            if fields.get("sign_type") == "MD5":
                return self._legacy_notification(fields, codec, merchant)
            signing.verify_params(fields, merchant.alipay_keys, merchant.sign_type, codec)
            note = notify.read_notification(fields)
        except InvalidSignature as error:
            return self._answer(400, "bad_signature", reason=str(error), out_trade_no=fields.get("out_trade_no"))
        except MalformedMessage as error:
            return self._answer(400, "malformed", reason=str(error))
        return self._apply_verified(note, merchant, legacy=False)

    def _legacy_notification(self, fields, codec, merchant):
        """MD5 notifications (§8.3): the MD5 check, then notify_verify at the MAPI gateway."""
        if not merchant.legacy_enabled:
            raise InvalidSignature("MD5 notification but no md5_key is configured")
        signing.md5_verify(fields, merchant.md5_key, codec)
        note = notify.read_notification(fields)
        order, events = self.store.get_order_and_events(note.out_trade_no or "-")
        if order is not None and order["product"] != "legacy":
            raise InvalidSignature("MD5 signature on an OpenAPI order")
        if any(event.get("notify_id") == note.notify_id and event.get("to") == note.trade_status for event in events):
            # Already applied: notify_verify would now say false (an id validates once).
            return self._answer(200, "duplicate", out_trade_no=note.out_trade_no)
        url = legacy.notify_verify_url(self.settings.mapi_gateway, merchant.partner, note.notify_id or "")
        try:
            status, text = http.get_text(url)
        except GatewayUnreachable as error:
            raise Unavailable(f"notify_verify: {error}") from None
        if status != 200 or not legacy.notify_verify_says_true(text):
            return self._answer(400, "notify_verify_false", out_trade_no=note.out_trade_no)
        return self._apply_verified(note, merchant, legacy=True, order=order)

    def _apply_verified(self, note, merchant, legacy, order=None):
        if not note.out_trade_no or not note.trade_status or not note.notify_id:
            return self._answer(400, "malformed", reason="out_trade_no, trade_status and notify_id are required")
        expected_app = merchant.partner if legacy else merchant.app_id
        claimed_app = note.fields.get("seller_id") if legacy else note.app_id
        if claimed_app != expected_app:
            return self._refuse(note, "app_id_mismatch", self._read_state(note.out_trade_no))
        if merchant.seller_id and not legacy and note.seller_id != merchant.seller_id:
            return self._refuse(note, "seller_mismatch", self._read_state(note.out_trade_no))
        report = orders.Report(note.trade_status, note.total_amount, note.refund_fee, note.is_refund)
        if order is not None:
            state, guessed = order_state(order), False
        elif note.is_refund:
            state, guessed = self._read_state(note.out_trade_no), False
        else:
            state, guessed = orders.likely_state(report, "legacy" if legacy else "page"), True
        for _ in range(5):
            if state is not None and (state.product == "legacy") != legacy:
                return self._answer(400, "scheme_mismatch", out_trade_no=note.out_trade_no)
            decision = orders.decide(state, report)
            if guessed and not isinstance(decision, orders.Change):
                state, guessed = self._read_state(note.out_trade_no), False
                continue
            if isinstance(decision, orders.Refused):
                return self._refuse(note, decision.reason, state)
            if isinstance(decision, orders.Unchanged):
                return self._answer(200, decision.reason, out_trade_no=note.out_trade_no)
            try:
                self._apply(note, state, decision, source="notify")
                return self._answer(200, "applied", out_trade_no=note.out_trade_no,
                                    transition=f"{decision.from_status}->{decision.to_status}")
            except ConditionFailed:
                state, guessed = self._read_state(note.out_trade_no), False
        raise Unavailable("the order kept changing under this notification")

    def _read_state(self, out_trade_no):
        order = self.store.get_order(out_trade_no)
        return order_state(order) if order else None

    def _apply(self, note, state, change, source):
        now = iso(self.clock())
        updates = {"status": change.to_status, "updated_at": now}
        if change.refunded_amount is not None:
            updates["refunded_amount"] = change.refunded_amount
        if change.from_status == orders.TRADE_CLOSED:
            updates["closed_locally"] = False  # the exception applies once
        for name in ("trade_no", "buyer_id"):
            if getattr(note, name):
                updates[name] = getattr(note, name)
        paid_at = parse_beijing_time(note.gmt_payment)
        if paid_at and change.to_status in orders.PAID:
            updates["paid_at"] = paid_at.isoformat()
        base = {"at": now, "source": source, "notify_id": note.notify_id}
        events = []
        if change.is_transition:
            events.append((f"{source}#{note.notify_id}#{note.trade_status}",
                           dict(base, type="transition", **{"from": change.from_status, "to": change.to_status})))
        if change.refund_increment is not None:
            out_request_no = note.out_biz_no or note.notify_id
            events.append((f"refund#{out_request_no}", dict(
                base, type="refund", out_request_no=out_request_no, status="REFUND_SUCCESS",
                refund_amount=format_amount(change.refund_increment), refund_fee=format_amount(note.refund_fee))))
        for reason in change.anomalies:
            events.append((f"anomaly#{note.notify_id}#{reason}", dict(base, type="anomaly", reason=reason)))
            log_event(event="anomaly", reason=reason, out_trade_no=note.out_trade_no, notify_id=note.notify_id)
        self.store.apply_change(note.out_trade_no, state, updates, events,
                                leaves_waiting=change.from_status == orders.WAIT_BUYER_PAY)

    def _refuse(self, note, reason, state):
        """A verified notification that contradicts the order: anomaly recorded, nothing changed.
        For an order we do not have (state None) it is logged, not stored."""
        known = state is not None
        if known:
            self.store.add_event(note.out_trade_no, f"anomaly#{note.notify_id}#{reason}", {
                "at": iso(self.clock()), "source": "notify", "type": "anomaly", "reason": reason,
                "notify_id": note.notify_id}, seq=state.version)
        return self._answer(422, reason, out_trade_no=note.out_trade_no, notify_id=note.notify_id,
                            stored=known)

    @staticmethod
    def _answer(status, outcome, **details):
        log_event(event="notification", status=status, outcome=outcome, **details)
        return NotifyAnswer(status, SUCCESS if status == 200 else FAILURE, outcome)

    # ---- browser return ----------------------------------------------------------------

    def handle_return(self, multi_value_query):
        """Verify the signed return; the order's status or UNKNOWN. Never changes the order."""
        try:
            fields = notify.fields_from_query(multi_value_query)
            merchant = self.merchant()
            if fields.get("sign_type") == "MD5":
                if not merchant.legacy_enabled:
                    raise InvalidSignature("MD5 return but no md5_key is configured")
                signing.md5_verify(fields, merchant.md5_key, notify.codec_for(fields.get("_input_charset")))
            else:
                signing.verify_params(fields, merchant.alipay_keys, merchant.sign_type,
                                      notify.codec_for(fields.get("charset")))
        except (InvalidSignature, MalformedMessage) as error:
            log_event(event="return", outcome="invalid", reason=str(error))
            raise InvalidRequest(f"the return is not signed by Alipay: {error}") from None
        out_trade_no = fields.get("out_trade_no") or ""
        order = self.store.get_order(out_trade_no) if _OUT_TRADE_NO.match(out_trade_no) else None
        log_event(event="return", outcome="verified", out_trade_no=out_trade_no)
        return out_trade_no, order


# ---- plain helpers -------------------------------------------------------------------------

def validate_create(body):
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", "body")
    product = body.get("product")
    if product not in orders.PRODUCTS:
        raise InvalidRequest(f"product must be one of {', '.join(orders.PRODUCTS)}", "product")
    subject = body.get("subject")
    if not isinstance(subject, str) or not 1 <= len(subject) <= 256 or not subject.strip():
        raise InvalidRequest("subject must be 1 to 256 characters", "subject")
    try:
        total_amount = parse_amount(body.get("total_amount"))
    except InvalidAmount as error:
        raise InvalidRequest(f"total_amount: {error}", "total_amount") from None
    request = {"product": product, "subject": subject, "total_amount": total_amount}
    out_trade_no = body.get("out_trade_no")
    if out_trade_no is not None:
        if not isinstance(out_trade_no, str) or not _OUT_TRADE_NO.match(out_trade_no):
            raise InvalidRequest("out_trade_no must match [A-Za-z0-9_]{1,64}", "out_trade_no")
        request["out_trade_no"] = out_trade_no
    timeout_express = body.get("timeout_express", "30m")
    match = _TIMEOUT_EXPRESS.match(timeout_express) if isinstance(timeout_express, str) else None
    if not match or not 1 <= int(match.group(1)) * _TIMEOUT_MINUTES[match.group(2)] <= 15 * 1440:
        raise InvalidRequest("timeout_express must be 1m to 15d, such as 30m, 2h or 1d", "timeout_express")
    request["timeout_express"] = timeout_express
    for name, limit in _OPTIONAL_TEXT.items():
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not 1 <= len(value) <= limit:
            raise InvalidRequest(f"{name} must be a string of 1 to {limit} characters", name)
        request[name] = value
    if "quit_url" in request and not re.match(r"^https?://", request["quit_url"]):
        raise InvalidRequest("quit_url must be an http(s) URL", "quit_url")
    unknown = set(body) - {"product", "subject", "total_amount", "out_trade_no", "timeout_express", *_OPTIONAL_TEXT}
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidRequest(f"unknown field {name}", name)
    return request


def _request_hash(request):
    canonical = {key: (format_amount(value) if key == "total_amount" else value) for key, value in request.items()}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _new_out_trade_no(now):
    return now.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:18].upper()


def _checked_out_trade_no(out_trade_no):
    if not _OUT_TRADE_NO.match(out_trade_no or ""):
        raise NotFound(f"no order {out_trade_no}")
    return out_trade_no


def order_state(order):
    return orders.OrderState(status=order["status"], total_amount=order["total_amount"],
                             refunded_amount=order.get("refunded_amount", 0),
                             closed_locally=bool(order.get("closed_locally")), product=order["product"],
                             version=int(order.get("version", 0)))


def order_view(order, events):
    view = {
        "out_trade_no": order["out_trade_no"], "status": order["status"], "product": order["product"],
        "subject": order["subject"], "total_amount": format_amount(order["total_amount"]),
        "refunded_amount": format_amount(order.get("refunded_amount", 0)),
        "refunds": [{"out_request_no": e["out_request_no"], "refund_amount": e["refund_amount"],
                     "status": e["status"], "at": e["at"]}
                    for e in sorted(events, key=lambda e: e["at"]) if e.get("type") == "refund"],
        "created_at": order["created_at"], "updated_at": order["updated_at"],
    }
    for name in ("trade_no", "buyer_id", "paid_at"):
        if order.get(name):
            view[name] = order[name]
    return view


def _plain(event):
    """An event as JSON: DynamoDB numbers would come back as Decimal; ours are strings already."""
    return {key: (str(value) if not isinstance(value, (str, bool, list, dict)) else value)
            for key, value in event.items() if value is not None and key != "seq"}
