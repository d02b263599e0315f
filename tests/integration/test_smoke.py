import json


def test_create_then_notify_then_read(client, merchant):
    r = client.http.post("/orders", headers={**merchant.auth, "Content-Type": "application/json"},
                         body=json.dumps({"product": "page", "subject": "s", "total_amount": "88.8"}))
    assert r.status_code == 201, r.body
    order = json.loads(r.body)
    body = merchant.notification(order["out_trade_no"], "88.80")
    r = client.http.post("/alipay/notify", headers={"Content-Type": "application/x-www-form-urlencoded"}, body=body)
    assert (r.status_code, r.body) == (200, b"success")
    r = client.http.get(f"/orders/{order['out_trade_no']}", headers=merchant.auth)
    print(r.body)
    assert json.loads(r.body)["status"] == "TRADE_SUCCESS"
