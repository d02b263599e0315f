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
    """The page a buyer sees when the merchant set no RETURN_REDIRECT_URL: the order in words, in
    Chinese first (Alipay's buyers) and English. Self-contained: an inline icon, so the browser asks
    this API for no /favicon.ico (API Gateway would answer 403)."""
    import decimal
    words = {"WAIT_BUYER_PAY": ("等待付款", "Waiting for the payment"), "TRADE_SUCCESS": ("支付成功", "Paid"),
             "TRADE_FINISHED": ("交易完成", "Paid; the trade is finished"),
             "TRADE_CLOSED": ("交易已关闭", "Closed: not paid, or refunded in full")}
    zh, en = words.get(status, ("未找到订单", "This order is not known here"))
    rows = [("订单号 Order", out_trade_no or "-")]
    if order:
        # A Decimal from storage, or a string when the return's query answered with the order's view.
        amount = decimal.Decimal(str(order["total_amount"]))
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
    import pathlib
    spec = (pathlib.Path(__file__).resolve().parent / "chalicelib" / "openapi.yaml").read_text(encoding="utf-8")
    return Response(spec, status_code=200, headers={"Content-Type": "application/yaml; charset=utf-8"})
