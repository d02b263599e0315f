"""A local Alipay for the pay -> return -> notify loop, offline.

It verifies every request as Alipay does (the app's registered public key or certificate,
Beijing timestamp, app_id), shows a cashier, sends the browser back with signed parameters, and
posts signed notifications, retried on Alipay's schedule (scaled by a time factor) until one is
answered with exactly `success`. The legacy MAPI gateway (MD5) works the same way, with
`notify_verify`. One room per concern:

  gateway.py        gateway.do: request checks, server-to-gateway methods, answers
  cashier.py        the buyer's pages, the mobile SDK's payment, signed returns
  legacy.py         the MAPI gateway: MD5 pay links, returns, notify_verify
  notifications.py  notification fields, signatures, the delivery loop
  trades.py         Alipay's ledger: payment, refunds, close, timeout
  barcode.py        in-store payment: alipay.trade.pay (test codes) and alipay.trade.cancel
  scenarios.py      misbehaviour on demand (`python -m sandbox trigger`)
  admin.py          the /sandbox/ API
  certs.py          certificate mode's PKI
"""
import html
import json
import threading

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from sandbox import certs
from sandbox.admin import Admin
from sandbox.barcode import Barcode
from sandbox.cashier import Cashier
from sandbox.errors import AlipayError
from sandbox.gateway import Gateway
from sandbox.legacy import LegacyMapi
from sandbox.notifications import RETRY_SCHEDULE, Notifier  # noqa: F401  (RETRY_SCHEDULE: tests)
from sandbox.scenarios import Scenarios
from sandbox.state import State
from sandbox.timing import Clock
from sandbox.trades import Ledger

FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="14" '
           'fill="#1677ff"/><text x="32" y="45" font-size="36" text-anchor="middle" fill="#fff">支</text></svg>')
ADMIN_ENDPOINTS = {"register_app", "register_partner", "switches", "clock", "certs", "rotate_alipay_cert",
                   "trades", "notifications", "trigger", "reset"}


class Sandbox(Gateway, Barcode, Cashier, LegacyMapi, Notifier, Ledger, Scenarios, Admin):
    def __init__(self, state_path=None, time_factor=1.0, public_url="http://127.0.0.1:8001"):
        self.state = State(state_path)
        self.clock = Clock(self.state.data.get("clock_offset", 0.0))
        self.time_factor = time_factor
        self.public_url = public_url
        self.urls = Map([
            Rule("/gateway.do", endpoint="gateway", methods=["GET", "POST"]),
            Rule("/cashier/<trade_id>", endpoint="cashier", methods=["GET"]),
            Rule("/cashier/<trade_id>/<action>", endpoint="cashier_action", methods=["POST"]),
            Rule("/app/pay", endpoint="app_pay", methods=["POST"]),
            Rule("/qr/<trade_id>", endpoint="cashier", methods=["GET"]),
            Rule("/sandbox/switches", endpoint="switches", methods=["POST"]),
            Rule("/sandbox/clock", endpoint="clock", methods=["POST"]),
            Rule("/sandbox/alipay_public_key", endpoint="alipay_public_key", methods=["GET"]),
            Rule("/sandbox/certs", endpoint="certs", methods=["GET"]),
            Rule("/sandbox/rotate_alipay_cert", endpoint="rotate_alipay_cert", methods=["POST"]),
            Rule("/sandbox/apps", endpoint="register_app", methods=["POST"]),
            Rule("/sandbox/partners", endpoint="register_partner", methods=["POST"]),
            Rule("/sandbox/trades", endpoint="trades", methods=["GET"]),
            Rule("/sandbox/notifications", endpoint="notifications", methods=["GET"]),
            Rule("/sandbox/notifications.html", endpoint="notifications_page", methods=["GET"]),
            Rule("/sandbox/trigger", endpoint="trigger", methods=["POST"]),
            Rule("/sandbox/reset", endpoint="reset", methods=["POST"]),
            Rule("/", endpoint="index", methods=["GET"]),
            Rule("/favicon.ico", endpoint="favicon", methods=["GET"]),  # browsers ask for it: no 404 in their console
        ])
        self._cert_keys = {}
        self._stop = threading.Event()
        self._wake = threading.Event()

    def __call__(self, environ, start_response):
        request = Request(environ)
        adapter = self.urls.bind_to_environ(environ)
        endpoint = None
        try:
            endpoint, values = adapter.match()
            response = getattr(self, "on_" + endpoint)(request, **values)
        except AlipayError as error:
            # The admin API answers JSON (its CLI prints it); the buyer's pages answer a page.
            response = self.json(error.fields, 400) if endpoint in ADMIN_ENDPOINTS else self.error_page(error.fields)
        except HTTPException as error:
            response = error
        except Exception as error:  # noqa: BLE001  a dev tool: show what happened
            fields = {"code": "SANDBOX", "msg": "sandbox error", "sub_code": type(error).__name__,
                      "sub_msg": str(error)}
            response = self.json(fields, 500) if endpoint in ADMIN_ENDPOINTS else Response(
                f"sandbox error: {type(error).__name__}: {error}", status=500)
        return response(environ, start_response)

    def signer(self, app_id):
        """(Alipay's private key for this app, alipay_cert_sn or None): certificate-mode apps get
        the current Alipay certificate's key (§6), the others the Alipay public key's."""
        app = self.state.data["apps"].get(app_id) or {}
        if not app.get("cert_mode"):
            return self.state.alipay_key, None
        current = self.state.pki["current_alipay_cert_sn"]
        if current not in self._cert_keys:  # parsing a PEM key costs milliseconds: once per key
            self._cert_keys[current] = certs.load_key(self.state.pki["alipay_certs"][current]["key"])
        return self._cert_keys[current], current

    @staticmethod
    def on_favicon(request):
        return Response(FAVICON, mimetype="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @staticmethod
    def json(data, status=200):
        return Response(json.dumps(data, ensure_ascii=False), status=status, mimetype="application/json")

    @staticmethod
    def text(data):
        return Response(data, mimetype="text/plain")

    @staticmethod
    def page(markup):
        return Response(markup, mimetype="text/html")

    @staticmethod
    def error_page(fields):
        details = "".join(f"<dt>{k}</dt><dd class={k}>{html.escape(str(v))}</dd>" for k, v in fields.items())
        return Response("<!doctype html><meta charset=utf-8><title>Alipay error</title>"
                        f"<h1>支付宝 sandbox: error</h1><dl id=error>{details}</dl>", status=400, mimetype="text/html")
