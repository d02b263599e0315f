"""In-store barcode payments (contract "In-store barcode payments"; protocol §3.7), as data. Pure.

What an answer to `alipay.trade.pay` means, decided once: paid; still open (the buyer is
confirming, or the outcome is unknown) and so polled, then cancelled; not processed at all; or
declined for good.
"""
import re

from chalicelib.alipay import client

PAID, WAITING, NOT_PROCESSED, DECLINED = "paid", "waiting", "not_processed", "declined"

# 40004 sub_codes that decline the payment for good (contract). Any other 40004, such as
# ACQ.SYSTEM_ERROR, leaves the outcome unknown.
DECLINES = frozenset({
    "ACQ.PAYMENT_AUTH_CODE_INVALID", "ACQ.BUYER_BALANCE_NOT_ENOUGH", "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH",
    "ACQ.ERROR_BALANCE_PAYMENT_DISABLE", "ACQ.BUYER_SELLER_EQUAL", "ACQ.TRADE_BUYER_NOT_MATCH",
    "ACQ.BUYER_ENABLE_STATUS_FORBID", "ACQ.PAYMENT_FAIL", "ACQ.TOTAL_FEE_EXCEED", "ACQ.PAYMENT_REQUEST_HAS_RISK",
})

AUTH_CODE = re.compile(r"[0-9]{16,24}")  # the buyer's payment code, as scanned
POLL_FOR_SECONDS = 60  # then cancel: within the contract's 45-120 s, before Alipay's ~3 minute auto-close


def classify_pay_answer(code, sub_code):
    """`code` None: no verifiable answer (a timeout, 20000 twice, a bad signature): unknown."""
    if code == client.SUCCESS:
        return PAID
    if code in client.NOT_PROCESSED:
        return NOT_PROCESSED
    if code == client.BUSINESS_FAILED and sub_code in DECLINES:
        return DECLINED
    return WAITING  # 10003 (confirming), 20000, an unknown 40004, no answer


def last_four(auth_code):
    """All that is ever logged of a payment code: it is a bearer instrument."""
    return auth_code[-4:] if isinstance(auth_code, str) else None
