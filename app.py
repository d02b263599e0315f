"""Routes and event handlers only: parse the request, call a use case, respond."""
import base64
import functools
import html
import json
import pathlib
import re
import uuid
from decimal import Decimal
from urllib.parse import urlencode

from chalice import Chalice, Rate, Response

from chalicelib import metrics, settings
from chalicelib.errors import InternalError, InvalidRequest, ServiceError, Unavailable
from chalicelib.service import Backend, Context, create, lifecycle, log, log_event, notifications, reconcile as passes
from chalicelib.service import publish, refunds, returns

app = Chalice(app_name="chalice-alipay")

MAX_JSON_BYTES = 64 * 1024
FORM = "application/x-www-form-urlencoded"
_backend = None


def service(context=None):
    """The use cases' context, over clients created once per container (lazily: cold start pays
    only for what the first request needs). Gateway calls never outlast the invocation."""
    global _backend
    if _backend is None:
        _backend = Backend()
    context = context or getattr(app, "lambda_context", None)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return Context(_backend, time_left=(lambda: remaining() / 1000) if remaining else None)


def _request_id(context=None):
    context = context or getattr(app, "lambda_context", None)
    request = getattr(app, "current_request", None)
    gateway_id = (getattr(request, "context", None) or {}).get("requestId") if request is not None else None
    return getattr(context, "aws_request_id", None) or gateway_id or uuid.uuid4().hex


def metered(function):
    """One invocation: its metrics collected and written at the end (chalicelib.metrics), its
    request id, function and stage on every log line."""
    def decorate(handler):
        @functools.wraps(handler)
        def wrapped(*args, **kwargs):
            context = args[1] if len(args) > 1 else getattr(args[0], "context", None) if args else None
            metrics.begin(function, _request_id(context))
            try:
                return handler(*args, **kwargs)
            finally:
                metrics.end()
        return wrapped
    return decorate


def _error(error):
    """The contract's JSON error, mapped from the failure kind in this one place."""
    body = {"code": error.code, "message": error.public_message, **error.details}
    if error.status >= 500:  # ours to look at (gateway refused, AWS down): the full reason goes to the log
        body["request_id"] = _invocation_id()
        log_event(event="error", status=error.status, code=error.code, reason=error.message)
    if error.field and error.status == 400:
        body["field"] = error.field
    return Response({"error": body}, status_code=error.status, headers={"Content-Type": "application/json"})


def _defect(error):
    """An exception nobody expected: a 500 in our shape, the traceback in the log, never the detail."""
    request_id = _invocation_id()
    log.exception(json.dumps({**metrics.context(), "event": "defect", "request_id": request_id,
                              "error": type(error).__name__}))
    return request_id


def _invocation_id():
    """The id this invocation's log lines carry (metered sets it), or a fresh one outside one."""
    return metrics.context().get("request_id") or _request_id()


def guarded(handler):
    """ServiceError -> the contract's JSON error; anything else -> 500 internal_error."""
    @metered("api_handler")
    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except ServiceError as error:
            return _error(error)
        except Exception as error:  # noqa: BLE001 - the edge: nothing escapes as Chalice's own 500
            _defect(error)
            return _error(InternalError(type(error).__name__))
    return wrapped


def merchant_route(handler):
    """Bearer token first, then the handler."""
    @guarded
    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        ctx = service()
        actor = ctx.authorize(app.current_request.headers.get("authorization"))
        return handler(ctx, actor, *args, **kwargs)
    return wrapped


MAX_JSON_DEPTH = 16
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def _json_body():
    """The request's JSON, bounded before it is parsed (size, then nesting), and refused when any
    text in it is not valid Unicode (a lone surrogate such as "\\ud800" cannot be signed or stored)."""
    raw = app.current_request.raw_body or b""
    if len(raw) > MAX_JSON_BYTES:
        raise InvalidRequest(f"the body is over {MAX_JSON_BYTES} bytes", "body")
    if _nesting(raw) > MAX_JSON_DEPTH:
        raise InvalidRequest(f"the body is nested deeper than {MAX_JSON_DEPTH} levels", "body")
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise InvalidRequest("the body is not JSON", "body") from None
    # Only a \u escape or non-ASCII bytes can put a lone surrogate in the parsed text.
    field = None if raw.isascii() and b"\\u" not in raw else _invalid_text(body)
    if field is not None:
        raise InvalidRequest("the text is not valid Unicode (a lone surrogate)", field or "body")
    return body


def _nesting(raw):
    """How deep the brackets of a JSON text go, strings left out: a cheap scan, no recursion."""
    depth = deepest = 0
    for bracket in _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _invalid_text(value, field=""):
    """The top-level field that holds text which is not valid Unicode, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return field
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        if isinstance(key, str) and _invalid_text(key) is not None:
            return field or "body"
        found = _invalid_text(item, field or (key if isinstance(key, str) else "body"))
        if found is not None:
            return found
    return None


def _base_url(ctx):
    """Where Alipay and browsers reach us: PUBLIC_BASE_URL, else derived from the request."""
    configured = ctx.settings.public_base_url
    if configured:
        return configured
    request = app.current_request
    host = request.headers.get("host")
    if not host:
        return None
    proto = request.headers.get("x-forwarded-proto", "http")
    stage = (request.context or {}).get("stage")
    # API Gateway's own domain carries the stage in the path; custom domains and chalice local don't.
    prefix = f"/{stage}" if stage and host.endswith(".amazonaws.com") else ""
    return f"{proto}://{host}{prefix}"


@app.route("/health", methods=["GET"])
def health():
    # Touches nothing in AWS: a load balancer or a person may call it freely.
    return {"ok": True}


@app.route("/orders", methods=["POST"])
@merchant_route
def create_order(ctx, actor):
    status, order = create.create_order(ctx, actor, _json_body(), app.current_request.headers.get("idempotency-key"),
                                        _base_url(ctx))
    return Response(order, status_code=status)


@app.route("/orders/{out_trade_no}", methods=["GET"])
@merchant_route
def get_order(ctx, actor, out_trade_no):
    return lifecycle.get_order(ctx, out_trade_no)


@app.route("/orders/{out_trade_no}/events", methods=["GET"])
@merchant_route
def order_events(ctx, actor, out_trade_no):
    return {"events": lifecycle.list_events(ctx, out_trade_no)}


@app.route("/orders/{out_trade_no}/refunds", methods=["POST"])
@merchant_route
def refund(ctx, actor, out_trade_no):
    status, answer = refunds.refund(ctx, actor, out_trade_no, _json_body())
    return Response(answer, status_code=status)


@app.route("/orders/{out_trade_no}/close", methods=["POST"])
@merchant_route
def close(ctx, actor, out_trade_no):
    return lifecycle.close(ctx, actor, out_trade_no)


@app.route("/orders/{out_trade_no}/cancel", methods=["POST"])
@merchant_route
def cancel(ctx, actor, out_trade_no):
    status, order = lifecycle.cancel(ctx, actor, out_trade_no)
    return Response(order, status_code=status)


@app.route("/orders/{out_trade_no}/sync", methods=["POST"])
@merchant_route
def sync(ctx, actor, out_trade_no):
    return lifecycle.sync(ctx, out_trade_no)


@app.route("/orders/{out_trade_no}/app-result", methods=["POST"])
@merchant_route
def app_result(ctx, actor, out_trade_no):
    return lifecycle.app_result(ctx, out_trade_no, _json_body())


@app.schedule(Rate(5, unit=Rate.MINUTES), name="reconcile")
@metered("reconcile")
def reconcile(event):
    """Finds what is due (missed notifications, abandoned orders, refunds of unknown outcome) and
    queues it for the worker (contract, reconcile)."""
    return passes.run_pass(service(event.context))


@app.on_sqs_message(queue=settings.reconcile_queue(), batch_size=10, name="reconcile_worker")
@metered("reconcile_worker")
def reconcile_worker(event):
    """One order per message; failed ones reported so SQS delivers only those again
    (ReportBatchItemFailures, set on the event source mapping by the merge template)."""
    ctx = service(event.context)
    _, retry = passes.work(ctx, [(record.to_dict()["messageId"], _message(record)) for record in event])
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in retry]}


@app.on_sqs_message(queue=settings.poll_queue(), batch_size=10, name="poll_worker")
@metered("poll_worker")
def poll_worker(event):
    """The fast lane: each message queries one order and, while it waits, chains the next poll."""
    ctx, retry = service(event.context), []
    for record in event:
        try:
            body = _message(record)
            passes.poll(ctx, body["out_trade_no"], float(body["until"]), cancel=bool(body.get("cancel")))
        except Exception as error:  # noqa: BLE001 - isolation: the others go on; this one comes back
            log_event(event="poll", outcome="error", error=type(error).__name__)
            retry.append(record.to_dict()["messageId"])
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in retry]}


def _message(record):
    try:
        body = json.loads(record.body)
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {}


@app.on_dynamodb_record(stream_arn=settings.orders_stream_arn(), starting_position="TRIM_HORIZON",
                        name="publish_events")
@metered("publish_events")
def publish_events(event):
    """Order events to EventBridge from the table's stream; failed records reported (contract, Order events)."""
    return publish.publish(service(event.context), event.to_dict()["Records"]).response()


def _plain(status, text):
    return Response(text, status_code=status, headers={"Content-Type": "text/plain; charset=utf-8"})


def _notification(raw_body):
    """Shared by the API route and the Function URL handler: (status, text)."""
    try:
        answer = notifications.handle(service(), raw_body)
        return answer.status, answer.body
    except Unavailable as error:
        metrics.count("Notifications", Outcome="unavailable")
        metrics.count("NotifyServerErrors")
        log_event(event="notification", status=503, outcome="unavailable", reason=error.message)
        return 503, "failure"
    except Exception as error:  # noqa: BLE001 - InternalError or a defect: Alipay must not retry for 25 h
        metrics.count("Notifications", Outcome="internal_error")
        metrics.count("NotifyServerErrors")
        _defect(error)
        log_event(event="notification", status=500, outcome="internal_error")
        return 500, "failure"


@app.route("/alipay/notify", methods=["POST"], content_types=[FORM])
@metered("api_handler")
def alipay_notify():
    return _plain(*_notification(app.current_request.raw_body))


@app.lambda_function(name="notify")
@metered("notify")
def notify_function(event, context):
    """The same notification logic for a Lambda Function URL (payload format 2.0)."""
    method = event.get("requestContext", {}).get("http", {}).get("method", "POST")
    if method != "POST":
        status, text = 405, "failure"
    else:
        body = event.get("body") or ""
        raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")
        status, text = _notification(raw)
    return {"statusCode": status, "headers": {"Content-Type": "text/plain; charset=utf-8"}, "body": text}


@app.route("/alipay/return", methods=["GET"])
@guarded
def alipay_return():
    request = app.current_request
    query = {name: request.query_params.getlist(name) for name in (request.query_params or {})}
    ctx = service()
    out_trade_no, order = returns.handle(ctx, query)
    status = order["status"] if order else "UNKNOWN"
    target = ctx.settings.return_redirect_url
    if target:
        joiner = "&" if "?" in target else "?"
        location = f"{target}{joiner}{urlencode({'out_trade_no': out_trade_no, 'status': status})}"
        return Response("", status_code=302, headers={"Location": location})
    return Response(_result_page(out_trade_no, order, status), status_code=200,
                    headers={"Content-Type": "text/html; charset=utf-8"})


def _result_page(out_trade_no, order, status):
    """The page a buyer sees when the merchant set no RETURN_REDIRECT_URL: the order in words, in
    Chinese first (Alipay's buyers) and English. Self-contained: an inline icon, so the browser asks
    this API for no /favicon.ico (API Gateway would answer 403)."""
    words = {"WAIT_BUYER_PAY": ("等待付款", "Waiting for the payment"), "TRADE_SUCCESS": ("支付成功", "Paid"),
             "TRADE_FINISHED": ("交易完成", "Paid; the trade is finished"),
             "TRADE_CLOSED": ("交易已关闭", "Closed: not paid, or refunded in full")}
    zh, en = words.get(status, ("未找到订单", "This order is not known here"))
    rows = [("订单号 Order", out_trade_no or "-")]
    if order:
        # A Decimal from storage, or a string when the return's query answered with the order's view.
        amount = Decimal(str(order["total_amount"]))
        rows += [("商品 Item", order["subject"]), ("金额 Amount", f"¥{amount:.2f}")]
    cells = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in rows)
    icon = "data:image/svg+xml," + "%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Ccircle " \
        "cx='8' cy='8' r='8' fill='%231677ff'/%3E%3C/svg%3E"
    style = ("body{margin:0;background:#f5f6f8;color:#1f2329;font-family:-apple-system,'PingFang SC',"
             "'Hiragino Sans GB','Microsoft YaHei','Noto Sans CJK SC','WenQuanYi Micro Hei',Arial,sans-serif}"
             "main{max-width:480px;margin:48px auto;background:#fff;border-radius:12px;padding:28px;text-align:center}"
             "h1{font-size:22px;margin:0}p{color:#86909c}dl{display:grid;grid-template-columns:auto 1fr;gap:8px 16px;"
             "text-align:left}dt{color:#86909c}dd{margin:0;overflow-wrap:anywhere}"
             "@media (max-width:520px){main{margin:0;border-radius:0;min-height:100vh}}")
    return ("<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>支付结果 Payment result</title><link rel=\"icon\" href=\"{icon}\"><style>{style}</style></head>"
            f"<body><main><h1 id=\"status\" data-status=\"{html.escape(status)}\">{zh}</h1><p>{en}</p>"
            f"<dl id=\"result\">{cells}</dl><p>状态以支付宝的通知为准，可能需要片刻更新。You can close this page; "
            "the status comes from Alipay's notification and may take a moment.</p></main></body></html>")


# The API reference, public like /health. The file sits in chalicelib/ because the deployment
# package carries only app.py, chalicelib/ and vendor/.
@app.route("/openapi.yaml", methods=["GET"])
def openapi_spec():
    return Response(_spec(), status_code=200, headers={"Content-Type": "application/yaml; charset=utf-8"})


@functools.lru_cache(maxsize=1)
def _spec():
    """Read once per container, when first asked for: never at cold start."""
    return (pathlib.Path(__file__).resolve().parent / "chalicelib" / "openapi.yaml").read_text(encoding="utf-8")
