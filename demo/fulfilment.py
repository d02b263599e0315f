"""The demo shop's fulfilment: a merchant system that acts on order events. Never deployed.

It reads the SQS queue that a rule on the local bus feeds (`make run`: devstack.py), dedupes on
`detail.id` (delivery is at least once), and ships every paid order: the step a warehouse would
take, "paid -> shipped". Closed or fully refunded orders are not shipped.

Hook: devstack wraps the shop with `Fulfilment.wrap(shop)`, which answers
`GET /fulfilment/<out_trade_no>` with `{"out_trade_no", "status", "shipped", "events": [...]}`
(the order's DetailTypes as they arrived). The shop's result page shows it with an element
`<span id="fulfilment"></span>` and, in its polling script once the order is paid:

    const f = await (await fetch('/fulfilment/' + encodeURIComponent(no))).json();
    document.getElementById('fulfilment').textContent = f.shipped ? 'Shipped' : 'Preparing';
    if (!f.shipped && tries < 60) { setTimeout(poll, 500); }
"""
import json
import threading

from werkzeug.wrappers import Request, Response


class Fulfilment:
    def __init__(self, sqs, queue_url):
        self.sqs, self.queue_url = sqs, queue_url
        self._orders = {}  # out_trade_no -> {"status", "shipped", "events"}
        self._seen = set()  # detail ids: a redelivered event is not acted on twice
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def take(self, envelope):
        """One EventBridge event as the queue delivers it; False when it was seen already."""
        detail = envelope["detail"]
        with self._lock:
            if detail["id"] in self._seen:
                return False
            self._seen.add(detail["id"])
            order = self._orders.setdefault(detail["out_trade_no"], {"status": None, "shipped": False, "events": []})
            order["events"].append(envelope["detail-type"])
            order["status"] = detail["status"]
            if envelope["detail-type"] == "order.paid" and detail["status"] in ("TRADE_SUCCESS", "TRADE_FINISHED"):
                order["shipped"] = True
            return True

    def poll_once(self):
        # Short polls: the local moto server serves one request at a time, and a long poll would
        # hold it for everyone else (localaws.MotoServer).
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                            WaitTimeSeconds=0).get("Messages", [])
        for message in messages:
            self.take(json.loads(message["Body"]))
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)

    def start(self):
        def run():
            while not self._stop.is_set():
                try:
                    if not self.poll_once():
                        self._stop.wait(0.3)
                except Exception:  # noqa: BLE001 - the local AWS restarting: try again shortly
                    self._stop.wait(1)
        self._thread = threading.Thread(target=run, daemon=True, name="fulfilment")
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def order(self, out_trade_no):
        with self._lock:
            found = self._orders.get(out_trade_no, {"status": None, "shipped": False, "events": []})
            return dict(found, out_trade_no=out_trade_no, events=list(found["events"]))

    def wrap(self, app):
        """The shop, plus GET /fulfilment/<out_trade_no>."""
        def wrapped(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if not path.startswith("/fulfilment/"):
                return app(environ, start_response)
            no = Request(environ).path.rsplit("/", 1)[-1]
            return Response(json.dumps(self.order(no)), mimetype="application/json")(environ, start_response)
        return wrapped
