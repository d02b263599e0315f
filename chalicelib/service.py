"""Use cases: create an order, read it, apply a notification, verify a return.

Routes call these and only these. They speak in plain values and the exceptions of
chalicelib.errors; app.py turns both into HTTP.
"""
import datetime
import hashlib
import json
import logging
import re
import threading
import uuid
from dataclasses import dataclass
from decimal import Decimal

import boto3
from botocore.config import Config

from chalicelib import orders, settings as settings_module
from chalicelib.alipay import gateway, http, legacy, notify, pay, signing
from chalicelib.alipay.client import BUSINESS_FAILED, GatewayClient
from chalicelib.alipay.errors import (AlipayError, GatewayError, GatewayUnreachable, InvalidAmount, InvalidSignature,
                                      MalformedMessage, MessageTooLarge)
from chalicelib.alipay.money import format_amount, parse_amount, parse_beijing_time, parse_reported_amount
from chalicelib.errors import (GatewayFailure, IdempotencyConflict, InvalidRequest, NotFound, NotSupported,
                               OrderNotClosable, RefundNotAllowed, Unavailable)
from chalicelib.merchant import MerchantSource
from chalicelib.store import ConditionFailed, OrderStore

# Lines go to whatever handler the root logger has: Lambda's (CloudWatch) or chalice local's.
log = logging.getLogger("chalice_alipay")
log.setLevel(logging.INFO)

_BOTO_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
_OUT_TRADE_NO = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_TIMEOUT_EXPRESS = re.compile(r"^([1-9][0-9]{0,4})([mhd])$")
_TIMEOUT_MINUTES = {"m": 1, "h": 60, "d": 1440}
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,64}$")
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
_OPTIONAL_TEXT = {"body": 128, "passback_params": 512, "quit_url": 400}
# After creation, a waiting order is queried on this backoff (seconds) by the reconciler.
RECONCILE_BACKOFF = (120, 300, 900, 3600, 6 * 3600, 24 * 3600)
REFUND_SUCCESS, REFUND_PENDING, REFUND_FAILED = "REFUND_SUCCESS", "REFUND_PENDING", "REFUND_FAILED"
RETURN_QUERY_TIMEOUTS = (1.0, 2.0)  # connect, read: the buyer waits for this (contract: 3 s)


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
        self._lock = threading.Lock()  # boto3's default session is not safe to create clients from in parallel
        self.merchants = MerchantSource(lambda: self.client("secretsmanager"))

    def client(self, name):
        if name not in self._clients:
            with self._lock:
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
    def __init__(self, backend, settings=None, clock=utc_now, time_left=None):
        self.backend = backend
        self.settings = settings or settings_module.load()
        self.clock = clock
        self.time_left = time_left or (lambda: 25.0)  # seconds left in this invocation
        self.store = OrderStore(backend.client("dynamodb"), self.settings.orders_table)

    def gateway(self, merchant=None):
        merchant = merchant or self.merchant()
        return GatewayClient(self.settings.gateway, merchant.credentials, merchant.alipay_keys,
                             alipay_cert_sn=merchant.alipay_cert_sn, aes_key=merchant.aes_key, time_left=self.time_left,
                             read_timeout=self.settings.gateway_read_timeout)

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
        request_hash = _request_hash(request)
        now = self.clock()
        epoch = int(now.timestamp())
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
        try:  # one conditional write; only a lost condition costs a read
            self.store.create_order(order, idempotency, now_epoch=epoch)
        except ConditionFailed:
            if idempotency_key:
                record = self.store.get_idempotency(actor, idempotency_key, epoch)
                if record:
                    return self._replay(record["out_trade_no"], request_hash, merchant, base_url)
            return self._replay(out_trade_no, request_hash, merchant, base_url)
        log_event(event="order_created", out_trade_no=out_trade_no, product=order["product"], actor=actor)
        return 201, self._with_payment(order, merchant, base_url)

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
        if product == "qr":
            return {"qr_code": order.get("qr_code") or self._precreate(order, merchant, notify_url)}
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

    def _precreate(self, order, merchant, notify_url):
        """The QR code of a stored order (contract: stored before precreate; a replay tries again)."""
        try:
            answer = self.gateway(merchant).precreate(order["out_trade_no"], format_amount(order["total_amount"]),
                                                      order["subject"], notify_url, order.get("timeout_express"))
        except (GatewayError, InvalidSignature) as error:
            raise GatewayFailure(f"alipay.trade.precreate: {error}") from None
        if answer.code != "10000" or not answer.fields.get("qr_code"):
            raise GatewayFailure(f"alipay.trade.precreate: {answer.code} {answer.sub_code}")
        self.store.set_fields(order["out_trade_no"], {"qr_code": answer.fields["qr_code"]}, only_if_absent="qr_code")
        return answer.fields["qr_code"]

    # ---- read --------------------------------------------------------------------------

    def get_order(self, out_trade_no):
        return order_view(*self._order_and_events(out_trade_no))

    def list_events(self, out_trade_no):
        order, events = self._order_and_events(out_trade_no)
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
        if order is not None:
            state, guessed = order_state(order), False
        elif note.is_refund:
            state, guessed = self._read_state(note.out_trade_no), False
        else:
            report = orders.Report(note.trade_status, note.total_amount)
            state, guessed = orders.likely_state(report, "legacy" if legacy else "page"), True
        kind, detail = self._apply_report(note, state, guessed, "notify", legacy)
        if kind == "refused":
            return self._refuse(note, *detail)
        if kind == "scheme_mismatch":
            return self._answer(400, kind, out_trade_no=note.out_trade_no)
        return self._answer(200, kind if kind == "applied" else detail, out_trade_no=note.out_trade_no,
                            change=detail)

    def _apply_report(self, note, state, guessed, source, legacy=False):
        """Apply what Alipay reported (a notification, or a query's answer) through the state machine.

        ("applied", change) | ("unchanged", reason) | ("refused", (reason, state)) | ("scheme_mismatch", None).
        A guessed state (no read) is trusted only to make a change, whose write is conditioned on it.
        """
        report = orders.Report(note.trade_status, note.total_amount, note.refund_fee, note.is_refund)
        for _ in range(5):
            if state is not None and (state.product == "legacy") != legacy:
                return "scheme_mismatch", None
            decision = orders.decide(state, report)
            if guessed and not isinstance(decision, orders.Change):
                state, guessed = self._read_state(note.out_trade_no), False
                continue
            if isinstance(decision, orders.Refused):
                return "refused", (decision.reason, state)
            if isinstance(decision, orders.Unchanged):
                return "unchanged", decision.reason
            change = f"{decision.from_status}->{decision.to_status}"
            if report.is_refund:
                self._settle_refund(note.out_trade_no, note.out_biz_no or note.notify_id, source,
                                    reported_fee=note.refund_fee, notify_id=note.notify_id,
                                    close=decision.to_status == orders.TRADE_CLOSED)
                return "applied", "refund " + change
            try:
                self._apply(note.out_trade_no, state, decision, source, note=note)
                return "applied", change
            except ConditionFailed:
                state, guessed = self._read_state(note.out_trade_no), False
        raise Unavailable("the order kept changing under this report")

    def _read_state(self, out_trade_no):
        order = self.store.get_order(out_trade_no)
        return order_state(order) if order else None

    def _apply(self, out_trade_no, state, change, source, note=None, actor=None, extra=None):
        """One transition, written with its event(s) in one conditional transaction."""
        now = iso(self.clock())
        updates = {"status": change.to_status, "updated_at": now, **(extra or {})}
        if change.from_status == orders.WAIT_BUYER_PAY:
            updates["waiting"] = None  # leaves the reconciler's index
        if change.from_status == orders.TRADE_CLOSED:
            updates["closed_locally"] = False  # the exception applies once
        for name in ("trade_no", "buyer_id"):
            if note is not None and getattr(note, name):
                updates[name] = getattr(note, name)
        paid_at = parse_beijing_time(note.gmt_payment) if note is not None else None
        if paid_at and change.to_status in orders.PAID:
            updates["paid_at"] = paid_at.isoformat()
        notify_id = note.notify_id if note is not None else None
        base = {"at": now, "source": source, "notify_id": notify_id, "actor": actor}
        tag = f"{notify_id}#{change.to_status}" if notify_id else f"v{state.version + 1}"
        events = [(f"{source}#{tag}", dict(base, type="transition", **{"from": change.from_status,
                                                                          "to": change.to_status}))]
        for reason in change.anomalies:
            events.append((f"anomaly#{tag}#{reason}", dict(base, type="anomaly", reason=reason)))
            log_event(event="anomaly", reason=reason, out_trade_no=out_trade_no, notify_id=notify_id)
        self.store.apply_change(out_trade_no, state, updates, events)

    def _refuse(self, note, reason, state):
        """A verified notification that contradicts the order: anomaly recorded, nothing changed.
        For an order we do not have (state None) it is logged, not stored."""
        if state is not None:
            self._record_anomaly(note.out_trade_no, reason, "notify", state, note.notify_id)
        return self._answer(422, reason, out_trade_no=note.out_trade_no, notify_id=note.notify_id,
                            stored=state is not None)

    def _record_anomaly(self, out_trade_no, reason, source, state, notify_id=None):
        """A report that was refused: one event, which a redelivery of the same report does not repeat."""
        tag = notify_id or f"{source}#v{state.version}"
        self.store.add_event(out_trade_no, f"anomaly#{tag}#{reason}", {
            "at": iso(self.clock()), "source": source, "type": "anomaly", "reason": reason,
            "notify_id": notify_id}, seq=state.version)

    @staticmethod
    def _answer(status, outcome, **details):
        log_event(event="notification", status=status, outcome=outcome, **details)
        return NotifyAnswer(status, SUCCESS if status == 200 else FAILURE, outcome)

    # ---- refunds -----------------------------------------------------------------------

    def refund(self, actor, out_trade_no, body):
        """(http status, refund view). The refund is recorded (pending, reserving its amount under
        a version condition, so refunds never exceed the order) before Alipay is called."""
        amount, out_request_no, reason = validate_refund(body)
        replay = False
        for _ in range(5):
            order, events = self._order_and_events(out_trade_no)
            if order["product"] == "legacy":
                raise NotSupported("legacy orders have no refunds through this service")
            record = _refund_record(events, out_request_no)
            if record is not None:
                if parse_reported_amount(record["refund_amount"]) != amount:
                    raise IdempotencyConflict(f"refund {out_request_no} exists with another amount", "out_request_no")
                replay = True
                if record["status"] == REFUND_SUCCESS:
                    return 200, refund_view(record, order_view(order, events))
                if record["status"] == REFUND_PENDING:
                    break  # ask Alipay again with the same out_request_no: it refunds at most once
            if order["status"] != orders.TRADE_SUCCESS:
                raise RefundNotAllowed(f"order {out_trade_no} is {order['status']}; only paid orders are refunded")
            pending = _decimal(order.get("refunds_pending"))
            remaining = order["total_amount"] - _decimal(order.get("refunded_amount")) - pending
            if amount > remaining:
                raise RefundNotAllowed(f"{format_amount(amount)} is more than the {format_amount(remaining)} "
                                       "that remains refundable")
            now = iso(self.clock())
            record = {"at": now, "source": "api", "type": "refund", "out_request_no": out_request_no,
                      "refund_amount": format_amount(amount), "status": REFUND_PENDING, "actor": actor}
            try:
                self.store.apply_change(out_trade_no, order_state(order),
                                        {"refunds_pending": pending + amount, "waiting": "REFUND", "updated_at": now},
                                        records=[(f"refund#{out_request_no}", record)])
                break
            except ConditionFailed:
                continue
        else:
            raise Unavailable("the order kept changing under this refund")
        return self._ask_refund(out_trade_no, out_request_no, amount, reason, replay)

    def _ask_refund(self, out_trade_no, out_request_no, amount, reason, replay):
        client = self.gateway()
        try:
            answer = client.refund(out_trade_no, format_amount(amount), out_request_no, reason)
            if answer.code == BUSINESS_FAILED:
                self._settle_refund(out_trade_no, out_request_no, "api", failed=True)
                raise RefundNotAllowed(f"Alipay refused the refund: {answer.sub_code} {answer.fields.get('sub_msg', '')}")
            if answer.fields.get("fund_change") == "Y":
                fee = answer.fields.get("refund_fee")
                self._settle_refund(out_trade_no, out_request_no, "api",
                                    reported_fee=parse_reported_amount(fee) if fee else None)
            else:  # fund_change N or absent: the refund query decides (protocol §3.6)
                self._settle_by_query(client, out_trade_no, out_request_no, "api")
        except (GatewayError, InvalidSignature) as error:
            log_event(event="refund", outcome="unknown", out_trade_no=out_trade_no, out_request_no=out_request_no,
                      reason=str(error))
        order, events = self._order_and_events(out_trade_no)
        record = _refund_record(events, out_request_no)
        # A notification may have settled it while we waited for the answer: the record decides.
        status = 202 if record["status"] == REFUND_PENDING else 200 if replay else 201
        return status, refund_view(record, order_view(order, events))

    def _settle_by_query(self, client, out_trade_no, out_request_no, source):
        answer = client.refund_query(out_trade_no, out_request_no)
        if answer.code == "10000" and answer.fields.get("refund_status") == REFUND_SUCCESS:
            self._settle_refund(out_trade_no, out_request_no, source)
            return True
        return False

    def _settle_refund(self, out_trade_no, out_request_no, source, reported_fee=None, notify_id=None,
                       close=False, failed=False):
        """Record a refund's outcome: one conditional transaction for the order and its refund record.

        refunded_amount becomes the larger of the largest cumulative refund_fee Alipay reported and
        the sum of our successful refunds, never a sum of notifications (contract). A refund
        Alipay reports that we never started (made in the merchant console) is recorded too.
        """
        for _ in range(5):
            order, events = self._order_and_events(out_trade_no)
            state, record = order_state(order), _refund_record(events, out_request_no)
            refunded = _decimal(order.get("refunded_amount"))
            done = record is not None and record["status"] == REFUND_SUCCESS
            if failed and (record is None or record["status"] != REFUND_PENDING):
                return
            if done and (reported_fee is None or reported_fee <= refunded):
                return
            if record is not None:
                amount = parse_reported_amount(record["refund_amount"])
            else:  # a refund we never started (the merchant console): what the report adds
                amount = max((reported_fee or Decimal(0)) - refunded, Decimal(0))
            totals = orders.settle_refund(
                orders.RefundTotals(refunded, _decimal(order.get("refunds_succeeded")),
                                    _decimal(order.get("refunds_pending"))),
                amount, was_pending=record is not None and record["status"] == REFUND_PENDING,
                already_succeeded=done, reported_fee=reported_fee, failed=failed)
            now = iso(self.clock())
            updates = {"refunds_pending": totals.pending, "refunds_succeeded": totals.succeeded,
                       "refunded_amount": totals.refunded, "updated_at": now,
                       "waiting": "REFUND" if totals.pending > 0 else None}
            new_record = dict(record or {"at": now, "source": source, "type": "refund",
                                         "out_request_no": out_request_no, "refund_amount": format_amount(amount)},
                              status=REFUND_FAILED if failed else REFUND_SUCCESS)
            if notify_id:
                new_record["notify_id"] = notify_id
            events_to_add = []
            full = totals.refunded >= order["total_amount"]
            if not failed and order["status"] == orders.TRADE_SUCCESS and (close or full):
                updates["status"] = orders.TRADE_CLOSED
                events_to_add.append((f"{source}#{notify_id or out_request_no}#{orders.TRADE_CLOSED}", {
                    "at": now, "source": source, "type": "transition", "from": orders.TRADE_SUCCESS,
                    "to": orders.TRADE_CLOSED, "notify_id": notify_id}))
            try:
                self.store.apply_change(out_trade_no, state, updates, events_to_add,
                                        records=[(f"refund#{out_request_no}", new_record)])
                log_event(event="refund", outcome=new_record["status"], out_trade_no=out_trade_no,
                          out_request_no=out_request_no, source=source)
                return
            except ConditionFailed:
                continue
        raise Unavailable("the order kept changing under this refund")

    # ---- close and sync ------------------------------------------------------------------

    def close(self, actor, out_trade_no, source="api"):
        """Close an unpaid order at Alipay and here (contract: also when Alipay never saw it)."""
        order = self._openapi_order(out_trade_no)
        if order["status"] == orders.TRADE_CLOSED:
            return order_view(order, [])
        if order["status"] in orders.PAID:
            raise OrderNotClosable(f"order {out_trade_no} is paid ({order['status']}); refund it instead")
        try:
            answer = self.gateway().close(out_trade_no)
        except (GatewayError, InvalidSignature) as error:
            raise GatewayFailure(f"alipay.trade.close: {error}") from None
        if answer.code == BUSINESS_FAILED and answer.sub_code == "ACQ.TRADE_STATUS_ERROR":
            view = self.sync(out_trade_no, source)  # paid meanwhile, most likely
            if view["status"] in orders.PAID:
                raise OrderNotClosable(f"order {out_trade_no} was paid at Alipay ({view['status']})")
            raise GatewayFailure(f"alipay.trade.close: {answer.sub_code}")
        if answer.code == BUSINESS_FAILED and answer.sub_code != "ACQ.TRADE_NOT_EXIST":
            raise GatewayFailure(f"alipay.trade.close: {answer.sub_code}")
        # 10000, or ACQ.TRADE_NOT_EXIST: the buyer never opened it, and it never will be paid.
        report = orders.Report(orders.TRADE_CLOSED, order["total_amount"])
        state = order_state(order)
        for _ in range(5):
            decision = orders.decide(state, report)
            if not isinstance(decision, orders.Change):
                break
            try:
                self._apply(out_trade_no, state, decision, source, actor=actor, extra={"closed_locally": True})
                break
            except ConditionFailed:
                state = self._read_state(out_trade_no)
        order, events = self._order_and_events(out_trade_no)
        if order["status"] in orders.PAID:
            raise OrderNotClosable(f"order {out_trade_no} was paid meanwhile ({order['status']})")
        return order_view(order, events)

    def sync(self, out_trade_no, source="query", timeouts=None, order=None):
        """alipay.trade.query, then the transition a notification would make (contract).
        `order`: the order as the caller just read it, so that it is not read again."""
        order = order or self._openapi_order(out_trade_no)
        connect, read = timeouts or (None, self.settings.gateway_read_timeout)
        try:
            client = self.gateway()
            answer = client.query(out_trade_no, read_timeout=read, connect_timeout=connect)
        except (GatewayError, InvalidSignature) as error:
            raise GatewayFailure(f"alipay.trade.query: {error}") from None
        if answer.code == BUSINESS_FAILED:
            if answer.sub_code != "ACQ.TRADE_NOT_EXIST":  # not paid yet: nothing to apply (§3.5)
                raise GatewayFailure(f"alipay.trade.query: {answer.sub_code}")
        else:
            try:
                observed = observation_from_query(answer.fields)
            except MalformedMessage as error:
                raise GatewayFailure(f"alipay.trade.query: {error}") from None
            kind, detail = self._apply_report(observed, order_state(order), False, source)
            if kind == "refused":
                reason, state = detail
                self._record_anomaly(out_trade_no, reason, source, state)
            log_event(event="sync", out_trade_no=out_trade_no, source=source, outcome=kind, detail=str(detail))
        order, events = self._order_and_events(out_trade_no)
        return order_view(order, events)

    def app_result(self, out_trade_no, body):
        """Verify what the mobile SDK returned. Never marks the order paid."""
        if not isinstance(body, dict) or not isinstance(body.get("result"), str):
            raise InvalidRequest("result must be the SDK's result string, byte for byte", "result")
        order = self._openapi_order(out_trade_no)
        merchant = self.merchant()
        reason = None
        try:
            fields = gateway.verify_response(body["result"], "alipay.trade.app.pay", merchant.alipay_keys,
                                             merchant.sign_type).fields
            if fields.get("app_id") != merchant.app_id:
                reason = "app_id_mismatch"
            elif fields.get("out_trade_no") != out_trade_no:
                reason = "out_trade_no_mismatch"
            elif parse_reported_amount(fields.get("total_amount", "")) != order["total_amount"]:
                reason = "amount_mismatch"
            elif merchant.seller_id and fields.get("seller_id") != merchant.seller_id:
                reason = "seller_mismatch"
        except (InvalidSignature, GatewayError, AlipayError) as error:
            reason = f"invalid: {error}"
        log_event(event="app_result", out_trade_no=out_trade_no, verified=reason is None, reason=reason,
                  result_status=body.get("resultStatus"))
        return {"verified": reason is None, "reason": reason, "status": order["status"],
                "resultStatus": body.get("resultStatus")}

    def _order_and_events(self, out_trade_no):
        order, events = self.store.get_order_and_events(_checked_out_trade_no(out_trade_no))
        if order is None:
            raise NotFound(f"no order {out_trade_no}")
        return order, events

    def _openapi_order(self, out_trade_no):
        order = self.store.get_order(_checked_out_trade_no(out_trade_no))
        if order is None:
            raise NotFound(f"no order {out_trade_no}")
        if order["product"] == "legacy":
            raise NotSupported("legacy orders have no refund, close or sync through this service")
        return order

    # ---- reconciliation ----------------------------------------------------------------

    def reconcile(self, min_age=None):
        """One pass: waiting orders queried on their backoff (or all at least `min_age` seconds
        old), paid ones applied, expired ones closed at Alipay and here, pending refunds settled.
        Found through the sparse `waiting` index, never a scan; legacy orders are not in it."""
        summary = {"checked": 0, "queried": 0, "paid": 0, "closed": 0, "refunds_settled": 0, "errors": 0}
        now = self.clock()
        for out_trade_no in self.store.waiting_orders("WAIT"):
            order = self.store.get_order(out_trade_no)
            if order is None or order["status"] != orders.WAIT_BUYER_PAY or order["product"] == "legacy":
                continue
            summary["checked"] += 1
            age = (now - _parse_iso(order["created_at"])).total_seconds()
            expired = age >= timeout_seconds(order.get("timeout_express") or "30m")
            step = int(order.get("reconcile_step", 0))
            due = age >= min_age if min_age is not None else (
                step < len(RECONCILE_BACKOFF) and age >= RECONCILE_BACKOFF[step])
            if not (due or expired):
                continue
            try:
                view = self.sync(out_trade_no, "reconcile", order=order)
                summary["queried"] += 1
                if view["status"] in orders.PAID:
                    summary["paid"] += 1
                elif expired and view["status"] == orders.WAIT_BUYER_PAY:
                    self.close(None, out_trade_no, "reconcile")
                    summary["closed"] += 1
                elif min_age is None:
                    passed = sum(1 for threshold in RECONCILE_BACKOFF if age >= threshold)
                    self.store.set_fields(out_trade_no, {"reconcile_step": passed})
            except (GatewayFailure, OrderNotClosable) as error:
                summary["errors"] += 1
                log_event(event="reconcile", out_trade_no=out_trade_no, outcome="error", reason=error.message)
        client = None
        for out_trade_no in self.store.waiting_orders("REFUND"):
            _, events = self.store.get_order_and_events(out_trade_no)
            for record in events:
                if record.get("type") != "refund" or record.get("status") != REFUND_PENDING:
                    continue
                client = client or self.gateway()
                try:
                    if self._settle_by_query(client, out_trade_no, record["out_request_no"], "reconcile"):
                        summary["refunds_settled"] += 1
                except (GatewayError, InvalidSignature) as error:
                    summary["errors"] += 1
                    log_event(event="reconcile", out_trade_no=out_trade_no, outcome="error", reason=str(error))
        log_event(event="reconcile", **summary)
        return summary

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
        if order is not None and order["status"] == orders.WAIT_BUYER_PAY and order["product"] != "legacy":
            # The notification may not be here yet: ask Alipay, briefly (the buyer is waiting).
            try:
                order = self.sync(out_trade_no, "return", timeouts=RETURN_QUERY_TIMEOUTS, order=order)
            except (GatewayFailure, Unavailable) as error:
                log_event(event="return", outcome="query_failed", out_trade_no=out_trade_no, reason=error.message)
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
    if not 60 <= timeout_seconds(timeout_express) <= 15 * 86400:
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


def validate_refund(body):
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", "body")
    try:
        amount = parse_amount(body.get("refund_amount"))
    except InvalidAmount as error:
        raise InvalidRequest(f"refund_amount: {error}", "refund_amount") from None
    out_request_no = body.get("out_request_no")
    if out_request_no is None:
        out_request_no = "R" + uuid.uuid4().hex[:20].upper()
    elif not isinstance(out_request_no, str) or not _OUT_TRADE_NO.match(out_request_no):
        raise InvalidRequest("out_request_no must match [A-Za-z0-9_]{1,64}", "out_request_no")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or not 1 <= len(reason) <= 256):
        raise InvalidRequest("reason must be 1 to 256 characters", "reason")
    unknown = set(body) - {"refund_amount", "out_request_no", "reason"}
    if unknown:
        raise InvalidRequest(f"unknown field {sorted(unknown)[0]}", sorted(unknown)[0])
    return amount, out_request_no, reason


def _refund_record(events, out_request_no):
    return next((e for e in events if e.get("type") == "refund" and e.get("out_request_no") == out_request_no), None)


def refund_view(record, order):
    return {"out_request_no": record["out_request_no"], "refund_amount": record["refund_amount"],
            "status": record["status"], "order": order}


def observation_from_query(fields):
    """A query's answer in the shape of a notification, for the same state machine (source query)."""
    try:
        amount = parse_reported_amount(fields.get("total_amount", ""))
    except InvalidAmount as error:
        raise MalformedMessage(str(error)) from None
    return notify.Notification(
        fields=fields, notify_id=None, app_id=None, out_trade_no=fields.get("out_trade_no"),
        trade_no=fields.get("trade_no"), trade_status=fields.get("trade_status"), total_amount=amount,
        refund_fee=None, out_biz_no=None, seller_id=None, buyer_id=fields.get("buyer_user_id") or None,
        gmt_payment=fields.get("send_pay_date") or None, sign_type=None)


def timeout_seconds(timeout_express):
    """Seconds in a `timeout_express` such as 30m, 2h or 1d; 0 for anything else."""
    match = _TIMEOUT_EXPRESS.match(timeout_express) if isinstance(timeout_express, str) else None
    return int(match.group(1)) * _TIMEOUT_MINUTES[match.group(2)] * 60 if match else 0


def _parse_iso(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)


def _decimal(value):
    return Decimal(str(value)) if value is not None else Decimal(0)


def _request_hash(request):
    """What makes two requests "the same": everything but the out_trade_no that names the order."""
    canonical = {key: (format_amount(value) if key == "total_amount" else value)
                 for key, value in request.items() if key != "out_trade_no"}
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
