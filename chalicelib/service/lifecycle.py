"""Read an order, close or cancel it, sync it with Alipay's query, check an app payment's result."""
import time

from chalicelib import orders
from chalicelib.alipay import gateway, notify
from chalicelib.alipay.client import BUSINESS_FAILED
from chalicelib.alipay.errors import (AlipayError, GatewayError, GatewayRefused, InvalidAmount, InvalidSignature,
                                      MalformedMessage)
from chalicelib.alipay.money import parse_reported_amount
from chalicelib.errors import GatewayFailure, InvalidRequest, OrderNotClosable
from chalicelib.service import log_event, reports
from chalicelib.service.views import event_list, order_state, order_view

_CLOSED_AT_ALIPAY = ("ACQ.TRADE_NOT_EXIST",)  # never opened by the buyer: it never will be paid (§3.5)


def get_order(ctx, out_trade_no):
    return order_view(*ctx.order_and_events(out_trade_no))


def list_events(ctx, out_trade_no):
    return event_list(*ctx.order_and_events(out_trade_no))


def close(ctx, actor, out_trade_no, source="api", order=None):
    """Close an unpaid order at Alipay and here (contract: also when Alipay never saw it, and when
    Alipay had already closed it)."""
    if order is None:
        order, _ = ctx.openapi_order(out_trade_no)
    if order["status"] == orders.TRADE_CLOSED:
        return get_order(ctx, out_trade_no)
    if order["status"] in orders.PAID:
        raise OrderNotClosable(f"order {out_trade_no} is paid ({order['status']}); refund it instead")
    try:
        answer = ctx.gateway().close(out_trade_no)
    except (GatewayError, InvalidSignature) as error:
        raise GatewayFailure(f"alipay.trade.close: {error}") from None
    if answer.code == BUSINESS_FAILED and answer.sub_code not in _CLOSED_AT_ALIPAY:
        if answer.sub_code != "ACQ.TRADE_STATUS_ERROR":
            raise GatewayFailure(f"alipay.trade.close: {answer.sub_code}")
        # Not closable at Alipay: paid meanwhile, or closed there already. The query tells which.
        view = sync(ctx, out_trade_no, source, order=order)
        if view["status"] in orders.PAID:
            raise OrderNotClosable(f"order {out_trade_no} was paid at Alipay ({view['status']})")
        if view["status"] == orders.TRADE_CLOSED:
            return view
        raise GatewayFailure(f"alipay.trade.close: {answer.sub_code}")
    reports.close_locally(ctx, order, source, actor=actor)
    view = get_order(ctx, out_trade_no)
    if view["status"] in orders.PAID:
        raise OrderNotClosable(f"order {out_trade_no} was paid meanwhile ({view['status']})")
    return view


CANCEL_ATTEMPTS, CANCEL_RETRY_SECONDS = 3, 2.0  # retry_flag=Y: the official F2F demo's bound (§3.7)


def cancel(ctx, actor, out_trade_no, source="api"):
    """alipay.trade.cancel (contract): (http status, order view). An unpaid trade is closed; a paid
    one Alipay refunds in full (`action: refund`): the payment (if we missed it), the full refund
    (out_request_no = out_trade_no, so its own notification is the same refund) and the close are
    recorded. retry_flag=Y is retried a few times; an outcome still unknown answers 202."""
    order, _ = ctx.openapi_order(out_trade_no)
    if order["status"] == orders.TRADE_CLOSED:
        return 200, get_order(ctx, out_trade_no)
    client = ctx.gateway()
    for attempt in range(CANCEL_ATTEMPTS):
        if attempt:
            time.sleep(CANCEL_RETRY_SECONDS)
        try:
            answer = client.cancel(out_trade_no)
        except GatewayRefused as error:
            raise GatewayFailure(f"alipay.trade.cancel: {error}") from None
        except (GatewayError, InvalidSignature) as error:
            log_event(event="cancel", out_trade_no=out_trade_no, outcome="unknown", reason=str(error)[:200])
            continue
        if answer.code == BUSINESS_FAILED:
            if answer.sub_code in _CLOSED_AT_ALIPAY:  # never seen by Alipay: nothing can pay it now
                reports.close_locally(ctx, order, source, actor=actor)
                return 200, get_order(ctx, out_trade_no)
            raise OrderNotClosable(f"Alipay refused to cancel {out_trade_no}: {answer.sub_code}")
        if answer.fields.get("retry_flag") == "Y":
            continue
        if answer.fields.get("action") == "refund":
            refund = notify.Notification(
                fields=answer.fields, out_trade_no=out_trade_no, trade_no=answer.fields.get("trade_no"),
                trade_status=orders.TRADE_CLOSED, total_amount=order["total_amount"],
                refund_fee=order["total_amount"], out_biz_no=out_trade_no)
            reports.apply(ctx, refund, source, order_state(order))
        else:
            reports.close_locally(ctx, order, source, actor=actor)
        log_event(event="cancel", out_trade_no=out_trade_no, outcome=answer.fields.get("action") or "close")
        return 200, get_order(ctx, out_trade_no)
    return 202, get_order(ctx, out_trade_no)


def sync(ctx, out_trade_no, source="query", timeouts=None, order=None):
    """alipay.trade.query, then what a notification would do (contract). `order`: the order as the
    caller just read it, so that it is not read again."""
    if order is None:
        order, _ = ctx.openapi_order(out_trade_no)
    connect, read = timeouts or (None, ctx.settings.gateway_read_timeout)
    try:
        answer = ctx.gateway().query(out_trade_no, read_timeout=read, connect_timeout=connect)
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
        kind, detail = reports.apply(ctx, observed, source, order_state(order))
        if kind == reports.REFUSED:
            reason, state = detail
            if state is not None:
                reports.record_anomaly(ctx, out_trade_no, reason, source, state)
        log_event(event="sync", out_trade_no=out_trade_no, source=source, outcome=kind, detail=str(detail))
    return get_order(ctx, out_trade_no)


def observation_from_query(fields):
    """A query's answer in the shape of a notification, for the same state machine (source query).
    It carries no refund amounts: `send_pay_date` says a payment happened."""
    try:
        amount = parse_reported_amount(fields.get("total_amount", ""))
    except InvalidAmount as error:
        raise MalformedMessage(str(error)) from None
    return notify.Notification(
        fields=fields, out_trade_no=fields.get("out_trade_no"), trade_no=fields.get("trade_no"),
        trade_status=fields.get("trade_status"), total_amount=amount, buyer_id=fields.get("buyer_user_id") or None,
        gmt_payment=fields.get("send_pay_date") or None)


def app_result(ctx, out_trade_no, body):
    """Verify what the mobile SDK returned. Never marks the order paid."""
    if not isinstance(body, dict) or not isinstance(body.get("result"), str):
        raise InvalidRequest("result must be the SDK's result string, byte for byte", "result")
    for name in ("resultStatus", "memo"):  # what the SDK returned beside result: text, when sent
        if name in body and not isinstance(body[name], str):
            raise InvalidRequest(f"{name} must be the SDK's string", name)
    order, _ = ctx.openapi_order(out_trade_no)
    merchant = ctx.merchant()
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
