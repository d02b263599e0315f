"""Create an order, replay it, and build what the client needs to pay (contract, POST /orders)."""
import datetime
import hashlib
import json
import re
import uuid

from chalicelib import barcode as barcode_rules, metrics, orders, store
from chalicelib.alipay import pay
from chalicelib.alipay.errors import GatewayError, InvalidAmount, InvalidSignature
from chalicelib.alipay.money import format_amount, parse_amount
from chalicelib.errors import GatewayFailure, IdempotencyConflict, InvalidRequest, NotSupported
from chalicelib.service import barcode, iso, log_event, parse_iso
from chalicelib.service.inputs import checked_text, no_nulls
from chalicelib.service.views import order_view
from chalicelib.store import ConditionFailed, valid_out_trade_no

_TIMEOUT_EXPRESS = re.compile(r"([1-9][0-9]{0,4})([mhd])")
_TIMEOUT_MINUTES = {"m": 1, "h": 60, "d": 1440}
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,64}")
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
_OPTIONAL_TEXT = {"body": 128, "passback_params": 512, "quit_url": 400}
_STORE_FIELD = re.compile(r"[A-Za-z0-9_\-]{1,32}")  # store_id, terminal_id: the merchant's own codes
_FIELDS = {"product", "subject", "total_amount", "out_trade_no", "timeout_express", "auth_code", "store_id",
           "terminal_id", *_OPTIONAL_TEXT}


def create_order(ctx, actor, body, idempotency_key, base_url):
    """(http status, order view with payment): 201 new, 200 replay of the same request."""
    request = validate_create(body)
    auth_code = request.pop("auth_code", None)  # never stored, never part of what makes requests "the same"
    if idempotency_key is not None and not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise InvalidRequest("Idempotency-Key must be 1-64 printable ASCII characters", "Idempotency-Key")
    merchant = ctx.merchant()
    if request["product"] == "legacy" and not merchant.legacy_enabled:
        raise NotSupported("the legacy product needs partner and md5_key in the secret", "product")
    now = ctx.clock()
    epoch, created_at = int(now.timestamp()), iso(now)
    deadline = now + datetime.timedelta(seconds=timeout_seconds(request["timeout_express"]))
    out_trade_no = request.get("out_trade_no") or _new_out_trade_no(now)
    order = {
        "out_trade_no": out_trade_no, "status": orders.WAIT_BUYER_PAY, "product": request["product"],
        "subject": request["subject"], "total_amount": request["total_amount"], "refunded_amount": 0,
        "timeout_express": request["timeout_express"], "body": request.get("body"),
        "passback_params": request.get("passback_params"), "quit_url": request.get("quit_url"),
        "store_id": request.get("store_id"), "terminal_id": request.get("terminal_id"),
        "created_at": created_at, "updated_at": created_at, "expires_at": iso(deadline),
        "actor": actor, "request_hash": _request_hash(request), "version": 0,
    }
    if order["product"] != "legacy":  # the reconciler leaves legacy orders alone (contract)
        created = now.timestamp()
        order.update(store.schedule(out_trade_no, orders.next_check(created, created, orders.QUERY_BACKOFF,
                                                                    deadline.timestamp())))
    # The idempotency record remembers the whole request, an explicit out_trade_no included: the
    # same key with another out_trade_no is another request (contract: 409).
    idempotency = ((idempotency_key, _request_hash(request, with_out_trade_no=True), epoch + IDEMPOTENCY_TTL_SECONDS)
                   if idempotency_key else None)
    try:  # one conditional write; only a lost condition costs a read
        ctx.store.create_order(order, idempotency, now_epoch=epoch)
    except ConditionFailed:
        if idempotency_key:
            record = ctx.store.get_idempotency(idempotency_key, epoch)
            if record:
                if record["request_hash"] != idempotency[1]:
                    raise IdempotencyConflict("this Idempotency-Key was used for a different request",
                                              "Idempotency-Key") from None
                return _replay(ctx, record["out_trade_no"], order["request_hash"], merchant, base_url)
        return _replay(ctx, out_trade_no, order["request_hash"], merchant, base_url)
    log_event(event="order_created", out_trade_no=out_trade_no, product=order["product"], actor=actor)
    metrics.count("OrdersCreated", Product=order["product"])
    if order["product"] == "barcode":
        return barcode.pay(ctx, order, auth_code, merchant, _notify_url(ctx, base_url))
    return 201, _with_payment(ctx, order, merchant, base_url)


def _replay(ctx, out_trade_no, request_hash, merchant, base_url):
    order = ctx.store.get_order(out_trade_no)
    if order is None:  # the key's order vanished: never silently make another
        raise IdempotencyConflict("the order this request names no longer exists")
    if order.get("request_hash") != request_hash:
        raise IdempotencyConflict(f"order {out_trade_no} exists with a different request", "out_trade_no")
    if order["status"] != orders.WAIT_BUYER_PAY or ctx.clock() >= expires_at(order) or order["product"] == "barcode":
        # Never offered for payment again; a barcode order is paid once (a re-scanned code replays).
        return 200, order_view(*ctx.order_and_events(out_trade_no))
    return 200, _with_payment(ctx, order, merchant, base_url)


def _with_payment(ctx, order, merchant, base_url):
    view = order_view(order, [])
    view["payment"] = _payment(ctx, order, merchant, base_url)
    return view


def _payment(ctx, order, merchant, base_url):
    settings = ctx.settings
    notify_url = _notify_url(ctx, base_url)
    return_url = f"{base_url}/alipay/return" if base_url else None
    product = order["product"]
    if product == "qr":
        return {"qr_code": order.get("qr_code") or _precreate(ctx, order, merchant, notify_url)}
    if product == "legacy":
        params = pay.legacy_pay_params(merchant.partner, merchant.md5_key, order["out_trade_no"], order["subject"],
                                       order["total_amount"], notify_url, return_url, body=order.get("body"))
        return {"url": pay.gateway_url(settings.mapi_gateway, params)}
    biz = pay.trade_biz(product, order["out_trade_no"], order["total_amount"], order["subject"],
                        body=order.get("body"), timeout_express=order.get("timeout_express"),
                        time_expire=expires_at(order), passback_params=order.get("passback_params"),
                        quit_url=order.get("quit_url"))
    params = pay.pay_request(merchant.credentials, product, biz, notify_url, return_url, now=ctx.clock())
    if product == "app":
        return {"order_string": pay.app_order_string(params)}
    return {"url": pay.gateway_url(settings.gateway, params), "form": pay.auto_submit_form(settings.gateway, params)}


def _notify_url(ctx, base_url):
    return ctx.settings.notify_url or (f"{base_url}/alipay/notify" if base_url else None)


def _precreate(ctx, order, merchant, notify_url):
    """The QR code of a stored order (contract: stored before precreate; a replay tries again)."""
    try:
        answer = ctx.gateway(merchant).precreate(order["out_trade_no"], format_amount(order["total_amount"]),
                                                 order["subject"], notify_url, order.get("timeout_express"),
                                                 time_expire=expires_at(order))
    except (GatewayError, InvalidSignature) as error:
        raise GatewayFailure(f"alipay.trade.precreate: {error}") from None
    if answer.code != "10000" or not answer.fields.get("qr_code"):
        raise GatewayFailure(f"alipay.trade.precreate: {answer.code} {answer.sub_code}")
    ctx.store.set_fields(order["out_trade_no"], {"qr_code": answer.fields["qr_code"]}, only_if_absent="qr_code")
    return answer.fields["qr_code"]


def expires_at(order):
    """The order's payment deadline; orders stored before it was data get it from their timeout."""
    if order.get("expires_at"):
        return parse_iso(order["expires_at"])
    seconds = timeout_seconds(order.get("timeout_express") or "30m")
    return parse_iso(order["created_at"]) + datetime.timedelta(seconds=seconds)


def validate_create(body):
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", "body")
    no_nulls(body)
    unknown = set(body) - _FIELDS
    if unknown:
        name = sorted(unknown)[0][:64]
        raise InvalidRequest(f"unknown field {name!r}", name or "body")
    product = body.get("product")
    if product not in orders.PRODUCTS:
        raise InvalidRequest(f"product must be one of {', '.join(orders.PRODUCTS)}", "product")
    subject = checked_text(body, "subject", 256, required=True)
    try:
        total_amount = parse_amount(body.get("total_amount"))
    except InvalidAmount as error:
        raise InvalidRequest(f"total_amount: {error}", "total_amount") from None
    request = {"product": product, "subject": subject, "total_amount": total_amount}
    out_trade_no = body.get("out_trade_no")
    if out_trade_no is not None:
        if not valid_out_trade_no(out_trade_no):
            raise InvalidRequest("out_trade_no must match [A-Za-z0-9_]{1,64}", "out_trade_no")
        request["out_trade_no"] = out_trade_no
    timeout_express = body.get("timeout_express", "30m")
    if not 60 <= timeout_seconds(timeout_express) <= 15 * 86400:
        raise InvalidRequest("timeout_express must be 1m to 15d, such as 30m, 2h or 1d", "timeout_express")
    request["timeout_express"] = timeout_express
    for name, limit in _OPTIONAL_TEXT.items():
        value = checked_text(body, name, limit)
        if value is not None:
            request[name] = value
    if "quit_url" in request and not re.match(r"https?://", request["quit_url"]):
        raise InvalidRequest("quit_url must be an http(s) URL", "quit_url")
    _validate_barcode(body, request)
    return request


def _validate_barcode(body, request):
    """auth_code for barcode orders only (digits, 16-24, as scanned); store_id and terminal_id
    are passed to Alipay for the merchant's reports."""
    auth_code = body.get("auth_code")
    if request["product"] == "barcode":
        if not isinstance(auth_code, str) or not barcode_rules.AUTH_CODE.fullmatch(auth_code):
            raise InvalidRequest("auth_code must be the scanned payment code: 16 to 24 digits", "auth_code")
        request["auth_code"] = auth_code
    elif auth_code is not None:
        raise InvalidRequest("auth_code is for barcode orders only", "auth_code")
    for name in ("store_id", "terminal_id"):
        value = body.get(name)
        if value is not None:
            if not isinstance(value, str) or not _STORE_FIELD.fullmatch(value):
                raise InvalidRequest(f"{name} must be 1 to 32 letters, digits, - or _", name)
            request[name] = value


def timeout_seconds(timeout_express):
    """Seconds in a `timeout_express` such as 30m, 2h or 1d; 0 for anything else."""
    match = _TIMEOUT_EXPRESS.fullmatch(timeout_express) if isinstance(timeout_express, str) else None
    return int(match.group(1)) * _TIMEOUT_MINUTES[match.group(2)] * 60 if match else 0


def _request_hash(request, with_out_trade_no=False):
    """What makes two requests "the same": for an order, everything but the out_trade_no that
    names it; for an Idempotency-Key, everything."""
    canonical = {key: (format_amount(value) if key == "total_amount" else value)
                 for key, value in request.items() if with_out_trade_no or key != "out_trade_no"}
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _new_out_trade_no(now):
    return now.strftime("%Y%m%d%H%M%S") + uuid.uuid4().hex[:18].upper()
