"""The service's own result page (no RETURN_REDIRECT_URL): the order in words, whatever form the
return handed it (the stored item with a Decimal, or the order's view with a string)."""
from decimal import Decimal

import pytest

from app import _result_page


@pytest.mark.parametrize("amount", [Decimal("36"), "36.00"])
def test_the_page_shows_item_amount_and_status_in_words(amount):
    page = _result_page("SHOP1", {"subject": "青瓷茶杯 <cup>", "total_amount": amount}, "TRADE_SUCCESS")
    assert "¥36.00" in page and "青瓷茶杯 &lt;cup&gt;" in page and "支付成功" in page and "SHOP1" in page
    assert "WAIT_BUYER_PAY" not in page


def test_an_unknown_order_is_said_in_words():
    page = _result_page("NOPE", None, "UNKNOWN")
    assert "未找到订单" in page and "This order is not known here" in page
