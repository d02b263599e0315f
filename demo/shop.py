"""The demo shop: pick an item, pay on PC or H5, land on a result page that polls the order.

It is a merchant backend in miniature: it holds the API token server-side, creates the order
through the API, hands the browser Alipay's auto-submitting form, and shows the order's status
as the API reports it (the notification may arrive after the browser comes back).
"""
import html
import json

import urllib3
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

ITEMS = {"tea": ("Longjing tea, 250 g", "88.80"), "cup": ("Celadon cup", "36.00"), "fan": ("Paper fan", "0.01")}
FINAL = ("TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED")

PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title><style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}
.item{{margin:.5em 0}} #status{{font-weight:bold}}</style></head><body>{body}</body></html>"""


class Shop:
    def __init__(self, api_url, token):
        self.api_url, self.token = api_url.rstrip("/"), token
        self.http = urllib3.PoolManager()
        self.urls = Map([Rule("/", endpoint="index"), Rule("/buy", endpoint="buy", methods=["POST"]),
                         Rule("/result", endpoint="result"), Rule("/api/orders/<no>", endpoint="order")])

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            endpoint, values = self.urls.bind_to_environ(environ).match()
        except HTTPException as error:  # a favicon, say
            return error(environ, start_response)
        return getattr(self, "on_" + endpoint)(request, **values)(environ, start_response)

    def _api(self, method, path, body=None):
        response = self.http.request(method, self.api_url + path, body=json.dumps(body) if body else None,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"}, timeout=10)
        return response.status, json.loads(response.data)

    def on_index(self, request):
        items = "".join(
            f'<div class="item"><label><input type="radio" name="item" value="{key}" id="item-{key}"'
            f'{" checked" if key == "tea" else ""}> {html.escape(name)}: ¥{price}</label></div>'
            for key, (name, price) in ITEMS.items())
        body = (f'<h1>Demo shop</h1><form method="post" action="/buy">{items}'
                '<p><label><input type="radio" name="channel" value="page" id="channel-page" checked> PC</label> '
                '<label><input type="radio" name="channel" value="wap" id="channel-wap"> H5 (mobile)</label></p>'
                '<button id="buy" type="submit">Pay with Alipay</button></form>')
        return Response(PAGE.format(title="Demo shop", body=body), mimetype="text/html")

    def on_buy(self, request):
        name, price = ITEMS.get(request.form.get("item"), ITEMS["tea"])
        product = "wap" if request.form.get("channel") == "wap" else "page"
        order = {"product": product, "subject": name, "total_amount": price}
        if product == "wap":
            order["quit_url"] = request.host_url.rstrip("/") + "/"
        status, answer = self._api("POST", "/orders", order)
        if status != 201:
            return Response(PAGE.format(title="Error", body=f"<pre id=error>{html.escape(json.dumps(answer))}</pre>"),
                            status=502, mimetype="text/html")
        # Alipay's auto-submitting form takes the browser to the cashier.
        body = f'<p>Taking you to Alipay… order <code id="out_trade_no">{answer["out_trade_no"]}</code></p>' \
               + answer["payment"]["form"]
        return Response(PAGE.format(title="Redirecting to Alipay", body=body), mimetype="text/html")

    def on_result(self, request):
        no = request.args.get("out_trade_no", "")
        body = (f'<h1>Your order</h1><p>Order <code id="out_trade_no">{html.escape(no)}</code>: '
                '<span id="status">checking…</span></p><p id="note"></p>'
                "<script>\n"
                f"const no = {json.dumps(no)}; const finalStates = {json.dumps(FINAL)}; let tries = 0;\n"
                "async function poll() {\n"
                "  tries += 1;\n"
                "  const r = await fetch('/api/orders/' + encodeURIComponent(no));\n"
                "  const order = r.ok ? await r.json() : {status: 'UNKNOWN'};\n"
                "  document.getElementById('status').textContent = order.status;\n"
                "  if (finalStates.includes(order.status)) {\n"
                "    document.getElementById('status').dataset.final = 'yes';\n"
                "    document.getElementById('note').textContent = order.status === 'TRADE_CLOSED' ? 'Closed.' : 'Paid, thank you!';\n"
                "  } else if (tries < 60) { setTimeout(poll, 500); }\n"
                "  else { document.getElementById('note').textContent = 'Still waiting for Alipay.'; }\n"
                "}\npoll();\n</script>")
        return Response(PAGE.format(title="Your order", body=body), mimetype="text/html")

    def on_order(self, request, no):
        status, answer = self._api("GET", f"/orders/{no}")
        return Response(json.dumps(answer), status=status, mimetype="application/json")
