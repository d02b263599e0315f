"""Routes and event handlers only: parse the request, call a use case, respond."""
import base64
import functools
import html
import json
from urllib.parse import urlencode

from chalice import Chalice, Rate, Response

from chalicelib.errors import InvalidRequest, ServiceError, Unavailable
from chalicelib.service import Backend, OrderService, log_event

app = Chalice(app_name="chalice-alipay")

MAX_JSON_BYTES = 64 * 1024
FORM = "application/x-www-form-urlencoded"
_backend = None


def service(context=None):
    """The use cases, over clients created once per container (lazily: cold start pays only
    for what the first request needs). Gateway calls never outlast the invocation."""
    global _backend
    if _backend is None:
        _backend = Backend()
    context = context or getattr(app, "lambda_context", None)
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return OrderService(_backend, time_left=(lambda: remaining() / 1000) if remaining else None)


def _error(error):
    if error.status >= 500:  # ours to look at (gateway refused, AWS down): say so in the log
        log_event(event="error", status=error.status, code=error.code, reason=error.message)
    body = {"code": error.code, "message": error.message}
    if error.field and error.status == 400:
        body["field"] = error.field
    return Response({"error": body}, status_code=error.status, headers={"Content-Type": "application/json"})


def merchant_route(handler):
    """Bearer token first, then the handler; ServiceError -> the contract's JSON error."""
    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            svc = service()
            actor = svc.authorize(app.current_request.headers.get("authorization"))
            return handler(svc, actor, *args, **kwargs)
        except ServiceError as error:
            return _error(error)
    return wrapped


def _json_body():
    raw = app.current_request.raw_body or b""
    if len(raw) > MAX_JSON_BYTES:
        raise InvalidRequest(f"the body is over {MAX_JSON_BYTES} bytes", "body")
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise InvalidRequest("the body is not JSON", "body") from None


def _base_url(svc):
    """Where Alipay and browsers reach us: PUBLIC_BASE_URL, else derived from the request."""
    configured = svc.settings.public_base_url
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
def create_order(svc, actor):
    status, order = svc.create_order(actor, _json_body(), app.current_request.headers.get("idempotency-key"),
                                     _base_url(svc))
    return Response(order, status_code=status)


@app.route("/orders/{out_trade_no}", methods=["GET"])
@merchant_route
def get_order(svc, actor, out_trade_no):
    return svc.get_order(out_trade_no)


@app.route("/orders/{out_trade_no}/events", methods=["GET"])
@merchant_route
def order_events(svc, actor, out_trade_no):
    return {"events": svc.list_events(out_trade_no)}


@app.route("/orders/{out_trade_no}/refunds", methods=["POST"])
@merchant_route
def refund(svc, actor, out_trade_no):
    status, answer = svc.refund(actor, out_trade_no, _json_body())
    return Response(answer, status_code=status)


@app.route("/orders/{out_trade_no}/close", methods=["POST"])
@merchant_route
def close(svc, actor, out_trade_no):
    return svc.close(actor, out_trade_no)


@app.route("/orders/{out_trade_no}/sync", methods=["POST"])
@merchant_route
def sync(svc, actor, out_trade_no):
    return svc.sync(out_trade_no)


@app.route("/orders/{out_trade_no}/app-result", methods=["POST"])
@merchant_route
def app_result(svc, actor, out_trade_no):
    return svc.app_result(out_trade_no, _json_body())


@app.schedule(Rate(5, unit=Rate.MINUTES), name="reconcile")
def reconcile(event):
    """Missed notifications, abandoned orders, refunds of unknown outcome (contract, reconcile)."""
    return service(event.context).reconcile()


def _plain(status, text):
    return Response(text, status_code=status, headers={"Content-Type": "text/plain; charset=utf-8"})


def _notification(raw_body):
    """Shared by the API route and the Function URL handler: (status, text)."""
    try:
        answer = service().handle_notification(raw_body)
        return answer.status, answer.body
    except Unavailable as error:
        log_event(event="notification", status=503, outcome="unavailable", reason=error.message)
        return 503, "failure"


@app.route("/alipay/notify", methods=["POST"], content_types=[FORM])
def alipay_notify():
    return _plain(*_notification(app.current_request.raw_body))


@app.lambda_function(name="notify")
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
def alipay_return():
    request = app.current_request
    query = {name: request.query_params.getlist(name) for name in (request.query_params or {})}
    svc = service()
    try:
        out_trade_no, order = svc.handle_return(query)
    except ServiceError as error:
        return _error(error)
    status = order["status"] if order else "UNKNOWN"
    target = svc.settings.return_redirect_url
    if target:
        joiner = "&" if "?" in target else "?"
        location = f"{target}{joiner}{urlencode({'out_trade_no': out_trade_no, 'status': status})}"
        return Response("", status_code=302, headers={"Location": location})
    return Response(_result_page(out_trade_no, order, status), status_code=200,
                    headers={"Content-Type": "text/html; charset=utf-8"})


def _result_page(out_trade_no, order, status):
    rows = [("Order", out_trade_no), ("Status", status)]
    if order:
        rows += [("Subject", order["subject"]), ("Amount", f"{order['total_amount']:.2f}")]
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>Payment result</title></head>"
            f"<body><h1>Payment result</h1><table id=\"result\">{cells}</table>"
            "<p>The status comes from Alipay's notification; it may take a moment to update.</p></body></html>")


# The API reference, public like /health. The file sits in chalicelib/ because the deployment
# package carries only app.py, chalicelib/ and vendor/.
@app.route("/openapi.yaml", methods=["GET"])
def openapi_spec():
    import pathlib
    spec = (pathlib.Path(__file__).resolve().parent / "chalicelib" / "openapi.yaml").read_text(encoding="utf-8")
    return Response(spec, status_code=200, headers={"Content-Type": "application/yaml; charset=utf-8"})
