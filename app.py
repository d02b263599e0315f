"""Routes and event handlers only: parse, call a use case, respond."""
from chalice import Chalice

app = Chalice(app_name="chalice-alipay")


@app.route("/health", methods=["GET"])
def health():
    # Touches nothing in AWS: a load balancer or a person may call it freely.
    return {"ok": True}
