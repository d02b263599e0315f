"""The buyer's browser coming back from Alipay (contract, GET /alipay/return): verified and shown,
never trusted to change the order; a brief query may (the query is Alipay's word, not the browser's)."""
from chalicelib import orders
from chalicelib.alipay import notify, signing
from chalicelib.alipay.errors import InvalidSignature, MalformedMessage
from chalicelib.errors import GatewayFailure, InvalidRequest, Unavailable
from chalicelib.service import lifecycle, log_event
from chalicelib.service.views import order_view
from chalicelib.store import valid_out_trade_no

RETURN_QUERY_TIMEOUTS = (1.0, 2.0)  # connect, read: the buyer waits for this (contract: 3 s)


def handle(ctx, multi_value_query):
    """Verify the signed return: (out_trade_no, order view or None). Never changes the order."""
    try:
        fields = notify.fields_from_query(multi_value_query)
        merchant = ctx.merchant()
        if fields.get("sign_type") == "MD5":
            if not merchant.legacy_enabled:
                raise InvalidSignature("MD5 return but no md5_key is configured")
            signing.md5_verify(fields, merchant.md5_key, notify.codec_for(fields.get("_input_charset")))
        else:
            signing.verify_params(fields, merchant.alipay_keys, merchant.sign_type,
                                  notify.codec_for(fields.get("charset")))
    except (InvalidSignature, MalformedMessage) as error:
        log_event(event="return", outcome="invalid", reason=str(error))
        raise InvalidRequest(f"the return is not signed by Alipay: {error}", "sign") from None
    out_trade_no = fields.get("out_trade_no") or ""
    order = ctx.store.get_order_and_events(out_trade_no) if valid_out_trade_no(out_trade_no) else (None, [])
    view = order_view(*order) if order[0] is not None else None
    if view is not None and view["status"] == orders.WAIT_BUYER_PAY and view["product"] != "legacy":
        # The notification may not be here yet: ask Alipay, briefly (the buyer is waiting).
        try:
            view = lifecycle.sync(ctx, out_trade_no, "return", timeouts=RETURN_QUERY_TIMEOUTS, order=order[0])
        except (GatewayFailure, Unavailable) as error:
            log_event(event="return", outcome="query_failed", out_trade_no=out_trade_no, reason=error.message)
    log_event(event="return", outcome="verified", out_trade_no=out_trade_no)
    return out_trade_no, view
