"""The use cases, one module each, over the small context they share (style.md).

    create.py         create an order, replay it, build its payment
    notifications.py  Alipay's asynchronous notification (RSA and legacy MD5)
    reports.py        apply what Alipay reports (notification or query answer) to an order
    refunds.py        refund records: request, settle, resend, console refunds
    lifecycle.py      close, sync, app result, reading orders
    returns.py        the browser's return
    reconcile.py      the scheduled pass

Routes call these and only these, with a `Context`. They speak in plain values and the
exceptions of chalicelib.errors; app.py turns both into HTTP.
"""
import datetime
import json
import logging
import re
import threading
from functools import cached_property

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import metrics, settings as settings_module
from chalicelib.alipay.client import GatewayClient
from chalicelib.alipay.money import read_time
from chalicelib.errors import NotFound, NotSupported, Unavailable
from chalicelib.merchant import MerchantSource
from chalicelib.store import OrderStore, valid_out_trade_no

# Lines go to whatever handler the root logger has: Lambda's (CloudWatch) or chalice local's.
log = logging.getLogger("chalice_alipay")
log.setLevel(logging.INFO)
# Our lines carry what they need in their JSON: the logging module need not look up, for every
# line, the thread and the process (the logging HOWTO, "Optimization"). The caller's frame stays:
# Lambda's JSON log format reports it for exceptions.
logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False

_BOTO_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})


def log_event(**fields):
    """One JSON line: order number and outcome, never keys, tokens or signed strings; the request
    id, function and stage of the invocation on every line."""
    log.info(json.dumps(dict(metrics.context(), **fields), ensure_ascii=False, default=str))


def _observe_gateway(method, code, milliseconds):
    metrics.count("GatewayCalls", Method=method, Code=code)
    metrics.timing("GatewayLatency", milliseconds, Method=method)


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(moment):
    """`2026-12-01T09:30:00.000Z`: UTC to the millisecond, how the table keeps time."""
    return moment.astimezone(datetime.timezone.utc).isoformat("T", "milliseconds")[:23] + "Z"


_ISO = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})T([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})\.([0-9]{1,6})Z")


def parse_iso(text):
    """The inverse of iso(); ValueError for anything else."""
    return read_time(_ISO, text, datetime.timezone.utc)


class Backend:
    """Per-container wiring: AWS clients created lazily, once; the merchant secret's cache."""

    def __init__(self):
        self._clients = {}
        self._queue_urls = {}
        self._lock = threading.Lock()  # boto3's default session is not safe to create clients from in parallel
        self.merchants = MerchantSource(lambda: self.client("secretsmanager"), kms_client_factory=lambda: self.client("kms"))

    def client(self, name):
        if name not in self._clients:
            with self._lock:
                if name not in self._clients:
                    self._clients[name] = boto3.client(name, config=_BOTO_CONFIG)
        return self._clients[name]

    def queue_url(self, name):
        if name not in self._queue_urls:
            self._queue_urls[name] = self._aws("get_queue_url", QueueName=name)["QueueUrl"]
        return self._queue_urls[name]

    def send(self, queue, bodies, delay_seconds=0):
        """Messages to an SQS queue, ten per call; every failed entry is an Unavailable (retry)."""
        for first in range(0, len(bodies), 10):
            entries = [{"Id": str(i), "MessageBody": json.dumps(body), "DelaySeconds": int(delay_seconds)}
                       for i, body in enumerate(bodies[first:first + 10])]
            answer = self._aws("send_message_batch", QueueUrl=self.queue_url(queue), Entries=entries)
            if answer.get("Failed"):
                raise Unavailable(f"SQS {queue}: {len(answer['Failed'])} message(s) not sent")

    def _aws(self, operation, **kwargs):
        try:
            return getattr(self.client("sqs"), operation)(**kwargs)
        except (BotoCoreError, ClientError) as error:
            raise Unavailable(f"SQS {operation}: {type(error).__name__}") from None


class Context:
    """What every use case shares: settings, the store, the merchant, the gateway, the clock and
    the time left in this invocation. Nothing else."""

    def __init__(self, backend, settings=None, clock=utc_now, time_left=None):
        self.backend = backend
        self.settings = settings or settings_module.load()
        self.clock = clock
        self.time_left = time_left or (lambda: 25.0)  # seconds left in this invocation

    @cached_property
    def store(self):
        return OrderStore(self.backend.client("dynamodb"), self.settings.orders_table)

    def merchant(self):
        return self.backend.merchants.get(self.settings.secret_id, self.settings.secret_ttl_seconds)

    def gateway(self, merchant=None):
        merchant = merchant or self.merchant()
        return GatewayClient(self.settings.gateway, merchant.credentials, merchant.alipay_keys,
                             alipay_cert_sn=merchant.alipay_cert_sn, aes_key=merchant.aes_key, time_left=self.time_left,
                             read_timeout=self.settings.gateway_read_timeout, observe=_observe_gateway)

    def authorize(self, authorization_header):
        scheme, _, token = (authorization_header or "").partition(" ")
        return self.merchant().authorize(token.strip() if scheme.lower() == "bearer" else "")

    def now_iso(self):
        return iso(self.clock())

    def now_epoch(self):
        return self.clock().timestamp()

    def order_and_events(self, out_trade_no):
        order, events = (self.store.get_order_and_events(out_trade_no) if valid_out_trade_no(out_trade_no)
                         else (None, []))
        if order is None:
            raise NotFound(f"no order {out_trade_no}")
        return order, events

    def openapi_order(self, out_trade_no):
        """An order that this service refunds, closes and syncs (legacy ones it does not)."""
        order, events = self.order_and_events(out_trade_no)
        if order["product"] == "legacy":
            raise NotSupported("legacy orders have no refund, close or sync through this service")
        return order, events
