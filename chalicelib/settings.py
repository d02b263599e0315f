"""Environment -> Settings, with the contract's defaults. Read when needed, never at import:
the Chalice test client and `chalice local` set the stage's environment per request."""
import os
from functools import cached_property


class Settings:
    """The contract's settings over an environment, each read when first asked for: a request
    reads only what it uses (a refused notification needs two of them), once."""

    def __init__(self, env):
        self._env = env

    def _text(self, name, default=None):
        return self._env.get(name) or default

    @cached_property
    def orders_table(self):
        return self._text("ORDERS_TABLE", "alipay-orders")

    @cached_property
    def secret_id(self):
        return self._text("ALIPAY_SECRET_ID", "alipay/merchant")

    @cached_property
    def gateway(self):
        return self._text("ALIPAY_GATEWAY", "https://openapi.alipay.com/gateway.do")

    @cached_property
    def mapi_gateway(self):
        return self._text("ALIPAY_MAPI_GATEWAY", "https://mapi.alipay.com/gateway.do")

    @cached_property
    def public_base_url(self):
        return (self._text("PUBLIC_BASE_URL") or "").rstrip("/") or None

    @cached_property
    def notify_url(self):
        return self._text("NOTIFY_URL")

    @cached_property
    def return_redirect_url(self):
        return self._text("RETURN_REDIRECT_URL")

    @cached_property
    def secret_ttl_seconds(self):
        return int(self._text("SECRET_TTL_SECONDS", 300))

    @cached_property
    def gateway_read_timeout(self):
        return float(self._text("GATEWAY_READ_TIMEOUT_SECONDS", 8))

    @cached_property
    def reconcile_queue(self):
        return reconcile_queue(self._env)

    @cached_property
    def poll_queue(self):
        return poll_queue(self._env)

    @cached_property
    def event_bus_name(self):
        return self._text("EVENT_BUS_NAME", "chalice-alipay")


def load(env=None):
    return Settings(os.environ if env is None else env)


# The SQS queues' names, also read when app.py is imported: Chalice's on_sqs_message takes the
# queue's name then (chalice sets the stage's environment before it imports the app).
def reconcile_queue(env=None):
    return (os.environ if env is None else env).get("RECONCILE_QUEUE") or "chalice-alipay-reconcile"


def poll_queue(env=None):
    return (os.environ if env is None else env).get("POLL_QUEUE") or "chalice-alipay-poll"


# Chalice needs the stream's ARN when app.py is imported, to describe the publisher's event source.
# `chalice package` gets this stand-in, which the merge template replaces with the table's
# StreamArn (deploy/template.py); `chalice deploy` needs the real one in ORDERS_STREAM_ARN.
STREAM_ARN_STAND_IN = "arn:aws:dynamodb:us-east-1:000000000000:table/alipay-orders/stream/set-by-the-template"


def orders_stream_arn(env=None):
    env = os.environ if env is None else env
    return env.get("ORDERS_STREAM_ARN") or STREAM_ARN_STAND_IN
