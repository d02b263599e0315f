"""The demo shop: pick an item, pay on PC or H5 (or at the point of sale, /pos, with the buyer's
payment code), land on a result page that polls the order.

It is a merchant backend in miniature: it holds the API token server-side, names its own orders,
creates them through the API, hands the browser Alipay's auto-submitting form, and shows the
order's status as the API reports it (the notification may arrive after the browser comes back).
The HTML is in demo/pages.py.
"""
import datetime
import json
import re
import secrets

import urllib3
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from demo import pages


def _art(body):
    return f'<svg viewBox="0 0 160 120" aria-hidden="true">{body}</svg>'


ITEMS = {
    "tea": {"zh": "西湖龙井 250 克", "en": "West Lake Longjing tea, 250 g", "price": "88.80",
            "art": _art('<ellipse cx="80" cy="64" rx="46" ry="22" fill="#6aa84f"/><path d="M40 64q40-40 80 0" '
                        'stroke="#3d7a2a" stroke-width="4" fill="none"/>')},
    "cup": {"zh": "青瓷茶杯", "en": "Celadon tea cup", "price": "36.00",
            "art": _art('<path d="M48 40h64l-8 50a10 10 0 0 1-10 8H66a10 10 0 0 1-10-8z" fill="#9fc5b8"/>'
                        '<ellipse cx="80" cy="40" rx="32" ry="7" fill="#cfe3dc"/>')},
    "fan": {"zh": "檀香折扇", "en": "Sandalwood folding fan", "price": "0.01",
            "art": _art('<path d="M80 100L30 40a70 70 0 0 1 100 0z" fill="#e6b36a"/><path d="M80 100L55 32M80 100'
                        'V28M80 100l25-68" stroke="#a8743a" stroke-width="3"/>')},
}
# Phones get Alipay's H5 cashier (it can hand over to the Alipay app): a user agent naming a phone.
PHONE = re.compile(r"Mobile|Android|iPhone|iPod|HarmonyOS", re.I)


class Shop:
    def __init__(self, api_url, token):
        self.api_url, self.token = api_url.rstrip("/"), token
        self.http = urllib3.PoolManager(maxsize=8)
        self.urls = Map([Rule("/", endpoint="index"), Rule("/buy", endpoint="buy", methods=["POST"]),
                         Rule("/result", endpoint="result"), Rule("/cancel", endpoint="cancel"),
                         Rule("/api/orders/<no>", endpoint="order"),
                         Rule("/pos", endpoint="pos"), Rule("/pos/charge", endpoint="charge", methods=["POST"]),
                         Rule("/favicon.svg", endpoint="favicon"), Rule("/favicon.ico", endpoint="favicon")])

    def __call__(self, environ, start_response):
        request = Request(environ)
        try:
            endpoint, values = self.urls.bind_to_environ(environ).match()
        except HTTPException as error:
            return error(environ, start_response)
        return getattr(self, "on_" + endpoint)(request, **values)(environ, start_response)

    def _api(self, method, path, body=None):
        response = self.http.request(method, self.api_url + path, body=json.dumps(body) if body else None,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"}, timeout=10)
        return response.status, json.loads(response.data)

    @staticmethod
    def _html(text, status=200):
        return Response(text, status=status, mimetype="text/html")

    def on_index(self, request):
        return self._html(pages.index(ITEMS, mobile=bool(PHONE.search(request.user_agent.string or ""))))

    def on_buy(self, request):
        item = ITEMS.get(request.form.get("item"), ITEMS["tea"])
        product = "wap" if request.form.get("channel") == "wap" else "page"
        # The merchant names its orders, so the H5 cashier's way back can name this one.
        out_trade_no = datetime.datetime.now().strftime("DEMO%Y%m%d%H%M%S") + secrets.token_hex(4).upper()
        order = {"product": product, "subject": f'{item["zh"]} · {item["en"]}', "total_amount": item["price"],
                 "out_trade_no": out_trade_no}
        if product == "wap":
            order["quit_url"] = f"{request.host_url.rstrip('/')}/cancel?out_trade_no={out_trade_no}"
        status, answer = self._api("POST", "/orders", order)
        if status != 201:
            message = answer.get("error", {}).get("message") if isinstance(answer, dict) else None
            return self._html(pages.failure(message or json.dumps(answer)), status=502)
        return self._html(pages.redirecting(answer["out_trade_no"], answer["payment"]["form"]))

    def on_pos(self, request):
        return self._html(pages.pos(ITEMS))

    def on_charge(self, request):
        """The point of sale: the buyer's payment code, scanned or typed, charged at once (barcode).
        Paid or still confirming, the result page follows the order; a decline says why."""
        item = ITEMS.get(request.form.get("item"), ITEMS["tea"])
        out_trade_no = datetime.datetime.now().strftime("DEMOPOS%Y%m%d%H%M%S") + secrets.token_hex(4).upper()
        status, answer = self._api("POST", "/orders", {
            "product": "barcode", "subject": f'{item["zh"]} · {item["en"]}', "total_amount": item["price"],
            "out_trade_no": out_trade_no, "auth_code": request.form.get("auth_code", "").strip(),
            "store_id": "DEMO", "terminal_id": "POS-1"})
        if status in (200, 201, 202):
            return Response(status=303, headers={"Location": f"/result?out_trade_no={out_trade_no}"})
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        reason = " ".join(part for part in (error.get("sub_msg"), error.get("sub_code")) if part)
        if error.get("code") == "payment_declined":  # an everyday answer at a till: the page says why
            return self._html(pages.declined(out_trade_no, reason or error.get("message", "")))
        return self._html(pages.failure(error.get("message") or json.dumps(answer), back="/pos"), status=502)

    def on_result(self, request):
        return self._html(pages.result(request.args.get("out_trade_no", "")))

    def on_cancel(self, request):
        return self._html(pages.cancelled(request.args.get("out_trade_no", "")))

    def on_order(self, request, no):
        status, answer = self._api("GET", f"/orders/{no}")
        return Response(json.dumps(answer), status=status, mimetype="application/json")

    def on_favicon(self, request):
        return Response(pages.FAVICON, mimetype="image/svg+xml", headers={"Cache-Control": "max-age=86400"})
