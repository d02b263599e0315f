"""Order events through the whole local stack: the sandbox notifies, `chalice local` writes, the
publisher process (`manage.py publish-events --follow`) reads the moto stream and puts events on
the local bus, a rule delivers them to SQS, and the demo shop's fulfilment ships what was paid."""
import json
import time


def wait(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.2)
    return condition()


def fulfilment(api, no):
    return json.loads(api.get(f"{api.stack.shop_url}/fulfilment/{no}").data)


def test_a_paid_order_reaches_the_merchants_queue_and_is_shipped_once(api):
    order = api.create(total_amount="12.00")
    api.pay(api.open_cashier(order))
    no = order["out_trade_no"]
    assert wait(lambda: fulfilment(api, no)["shipped"])
    api.trigger("duplicate", no)  # Alipay notifies again: nothing new is published
    api.wait_delivered(no, 2)
    # A later order's payment shipped: the publisher has read past the duplicate by then.
    later = api.create(total_amount="1.00")
    api.pay(api.open_cashier(later))
    assert wait(lambda: fulfilment(api, later["out_trade_no"])["shipped"])
    assert fulfilment(api, no)["events"] == ["order.created", "order.paid"]
