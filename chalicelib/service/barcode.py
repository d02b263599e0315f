"""In-store barcode payments (contract "In-store barcode payments"): the order is stored, then
`alipay.trade.pay` is called once; the answer decides at once (paid, declined, not processed) or
the order is polled on the fast lane and cancelled if still unpaid when the polling ends.

The `auth_code` is a bearer instrument: it is sent to Alipay once and never stored; logs show its
last four digits only.
"""
from chalicelib import barcode, orders
from chalicelib.alipay import notify
from chalicelib.alipay.errors import GatewayError, GatewayRefused, InvalidAmount, InvalidSignature
from chalicelib.alipay.money import format_amount, parse_reported_amount
from chalicelib.errors import GatewayFailure, PaymentDeclined, Unavailable
from chalicelib.service import log_event, reports
from chalicelib.service.views import order_state, order_view


def pay(ctx, order, auth_code, merchant, notify_url):
    """(http status, order view) for a stored, waiting barcode order: 201 paid, 202 waiting (polled);
    PaymentDeclined (422) or GatewayFailure (502) close it."""
    no = order["out_trade_no"]
    started = ctx.now_epoch()
    answer = reason = None
    try:
        answer = ctx.gateway(merchant).pay(no, format_amount(order["total_amount"]), order["subject"], auth_code,
                                           time_expire=None, store_id=order.get("store_id"),
                                           terminal_id=order.get("terminal_id"), notify_url=notify_url)
        outcome = barcode.classify_pay_answer(answer.code, answer.sub_code)
    except GatewayRefused as error:
        outcome, answer = barcode.NOT_PROCESSED, error
    except (GatewayError, InvalidSignature) as error:
        outcome, reason = barcode.WAITING, str(error)[:200]  # the outcome is unknown: polled
    log_event(event="barcode_pay", out_trade_no=no, outcome=outcome, auth_code=barcode.last_four(auth_code),
              code=getattr(answer, "code", None), sub_code=getattr(answer, "sub_code", None), reason=reason)
    if outcome == barcode.PAID:
        reports.apply(ctx, _paid_report(answer.fields, order), "pay", order_state(order))
        return 201, _view(ctx, no)
    if outcome == barcode.WAITING:
        start_polling(ctx, no, started + barcode.POLL_FOR_SECONDS)
        return 202, _view(ctx, no)
    reports.close_locally(ctx, order, "pay", reason=answer.sub_code or answer.code)
    if outcome == barcode.DECLINED:
        raise PaymentDeclined(f"Alipay declined the payment: {answer.sub_code}", sub_code=answer.sub_code,
                              sub_msg=answer.fields.get("sub_msg"))
    raise GatewayFailure(f"alipay.trade.pay was not processed: {answer.code} {answer.sub_code}")


def start_polling(ctx, out_trade_no, until):
    """The fast lane (reconcile.poll): a query every few seconds until `until`, then a cancel if
    still unpaid. Should SQS be down, the reconciler's own schedule still finds the order."""
    try:
        ctx.backend.send(ctx.settings.poll_queue, [{"out_trade_no": out_trade_no, "until": until, "cancel": True}],
                         delay_seconds=5)
    except Unavailable as error:
        log_event(event="barcode_poll", out_trade_no=out_trade_no, outcome="not_queued", reason=error.message)


def _paid_report(fields, order):
    """alipay.trade.pay's 10000 answer in the shape of a notification (source pay)."""
    try:
        amount = parse_reported_amount(fields.get("total_amount", ""))
    except InvalidAmount:
        amount = order["total_amount"]  # a paid answer without the amount: the one we asked for
    return notify.Notification(
        fields=fields, out_trade_no=order["out_trade_no"], trade_no=fields.get("trade_no"),
        trade_status=orders.TRADE_SUCCESS, total_amount=amount, buyer_id=fields.get("buyer_user_id") or None,
        gmt_payment=fields.get("gmt_payment") or None)


def _view(ctx, out_trade_no):
    return order_view(*ctx.order_and_events(out_trade_no))
