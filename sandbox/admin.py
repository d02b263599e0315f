"""The sandbox's own API under /sandbox/: registrations, what it holds, switches, the trades'
clock, certificate rotation, scenarios. Errors are JSON: {"code", "msg", "sub_code", "sub_msg"}."""
import html

from sandbox import certs, protocol
from sandbox.timing import stamp

DEFAULT_SELLER = "2088102177649450"


class Admin:
    """Mixed into Sandbox."""

    def on_index(self, request):
        return self.page("<h1>Alipay sandbox</h1><p><a href='/sandbox/notifications.html'>notifications</a></p>")

    def on_alipay_public_key(self, request):
        return self.text(protocol.public_key_line(self.state.alipay_key))

    def on_register_app(self, request):
        """{"app_id", "public_key", "seller_id"?, "cert_mode"?}. In certificate mode the answer
        carries the app certificate Alipay issued for that key, the current Alipay certificate
        and the root bundle (what the console hands out, §6)."""
        body = request.get_json(force=True)
        public_key = protocol.public_key_from_text(body["public_key"])  # refuse what cannot be used
        app = {"public_key": body["public_key"], "seller_id": body.get("seller_id", DEFAULT_SELLER),
               "cert_mode": bool(body.get("cert_mode"))}
        answer = {"app_id": body["app_id"], "alipay_public_key": protocol.public_key_line(self.state.alipay_key)}
        with self.state.lock:
            if app["cert_mode"]:
                app["app_cert"], app["app_cert_sn"] = certs.issue_app_cert(self.state.pki, body["app_id"], public_key)
                answer = dict(answer, app_cert=app["app_cert"], **self.cert_material())
            self.state.data["apps"][body["app_id"]] = app
            self.state.save()
        return self.json(answer)

    def cert_material(self):
        pki = self.state.pki
        current = pki["current_alipay_cert_sn"]
        return {"alipay_cert": pki["alipay_certs"][current]["cert"], "alipay_cert_sn": current,
                "alipay_root_cert": pki["root_bundle"], "alipay_root_cert_sn": certs.root_cert_sn(pki["root_bundle"])}

    def on_certs(self, request):
        return self.json(self.cert_material())

    def on_rotate_alipay_cert(self, request):
        """Alipay switches to a new certificate (and key) for certificate-mode apps; the old one
        stays downloadable with alipay.open.app.alipaycert.download."""
        with self.state.lock:
            sn, previous = certs.rotate_alipay_cert(self.state.pki)
            self.state.save()
        return self.json({"alipay_cert_sn": sn, "previous_alipay_cert_sn": previous})

    def on_register_partner(self, request):
        body = request.get_json(force=True)
        with self.state.lock:
            self.state.data["partners"][body["partner"]] = {"md5_key": body["md5_key"]}
            self.state.save()
        return self.json({"partner": body["partner"]})

    def on_trades(self, request):
        self.close_expired()
        return self.json(self.state.data["trades"])

    def on_notifications(self, request):
        return self.json(self.state.data["notifications"])

    def on_notifications_page(self, request):
        rows = "".join(
            f"<tr><td>{html.escape(n['id'])}</td><td>{html.escape(n['out_trade_no'])}</td>"
            f"<td>{html.escape(n['label'])}</td><td>{len(n['attempts'])}</td>"
            f"<td>{'delivered' if n['done'] else 'gave up' if n.get('gave_up') else 'pending'}</td>"
            f"<td>{html.escape('; '.join(str(a['status']) + ' ' + a['body'][:20] for a in n['attempts']))}</td></tr>"
            for n in self.state.data["notifications"])
        return self.page("<!doctype html><meta charset=utf-8><title>Sandbox notifications</title>"
                         "<h1>Notifications</h1><table border=1><tr><th>id</th><th>out_trade_no</th><th>what</th>"
                         f"<th>attempts</th><th>state</th><th>answers</th></tr>{rows}</table>")

    def on_switches(self, request):
        """Make the next calls of a method misbehave. Counts say how many calls:
        fail_20000; delay_count (+ delay_seconds): done, answered late; tamper: the answer does
        not verify; answer_count (+ answer_sub_code, answer_code=40004, perform=false): answered
        with that failure, the work done first only when perform is true; lost_count (+ lost_as
        "drop" | "504"): never processed, the connection dropped or a 504; retry_count
        (alipay.trade.cancel): answered ACQ.SYSTEM_ERROR with retry_flag Y, nothing done."""
        body = request.get_json(force=True)
        if body.get("answer_sub_code") and "answer_count" not in body:
            body["answer_count"] = body.pop("count", 1)
        with self.state.lock:
            self.state.data["switches"][body.pop("method")] = body
            self.state.save()
        return self.json({"switches": self.state.data["switches"]})

    def on_clock(self, request):
        """{"advance_seconds": N}: the trades' time moves forward (their expiry, gmt_* stamps)."""
        body = request.get_json(force=True)
        with self.state.lock:
            self.clock.advance(float(body.get("advance_seconds", 0)))
            self.state.data["clock_offset"] = self.clock.offset.total_seconds()
            self.state.save()
        closed = self.close_expired()
        return self.json({"now": stamp(self.now()), "closed": closed})

    def on_reset(self, request):
        with self.state.lock:
            self.state.reset()
            self.clock.advance(-self.clock.offset.total_seconds())  # the trades' time is real time again
        return self.json({"reset": True})

    def on_trigger(self, request):
        body = request.get_json(force=True)
        return self.json(self.trigger(body.pop("scenario", ""), body.pop("out_trade_no", ""), **body))
