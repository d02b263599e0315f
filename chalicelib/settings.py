"""Environment -> Settings, with the contract's defaults. Read when needed, never at import:
the Chalice test client and `chalice local` set the stage's environment per request."""
import os


class _Read:
    """One setting: read from the environment when first asked for, then kept on the instance."""

    def __init__(self, variable, default=None, convert=None):
        self.variable, self.default, self.convert = variable, default, convert

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, settings, owner=None):
        if settings is None:
            return self
        value = settings._env.get(self.variable) or self.default
        value = self.convert(value) if self.convert and value is not None else value
        settings.__dict__[self.name] = value  # a plain attribute from now on: read once
        return value


class Settings:
    """The contract's settings over an environment, each read when first asked for: a request
    reads only what it uses (a refused notification needs two of them), once."""
    orders_table = _Read("ORDERS_TABLE", "alipay-orders")
    secret_id = _Read("ALIPAY_SECRET_ID", "alipay/merchant")
    gateway = _Read("ALIPAY_GATEWAY", "https://openapi.alipay.com/gateway.do")
    mapi_gateway = _Read("ALIPAY_MAPI_GATEWAY", "https://mapi.alipay.com/gateway.do")
    public_base_url = _Read("PUBLIC_BASE_URL", convert=lambda url: url.rstrip("/") or None)
    notify_url = _Read("NOTIFY_URL")
    return_redirect_url = _Read("RETURN_REDIRECT_URL")
    secret_ttl_seconds = _Read("SECRET_TTL_SECONDS", 300, int)
    gateway_read_timeout = _Read("GATEWAY_READ_TIMEOUT_SECONDS", 8, float)
    reconcile_queue = _Read("RECONCILE_QUEUE", "chalice-alipay-reconcile")
    poll_queue = _Read("POLL_QUEUE", "chalice-alipay-poll")
    event_bus_name = _Read("EVENT_BUS_NAME", "chalice-alipay")

    def __init__(self, env):
        self._env = env


def load(env=None):
    return Settings(os.environ if env is None else env)


# The SQS queues' names, also read when app.py is imported: Chalice's on_sqs_message takes the
# queue's name then (chalice sets the stage's environment before it imports the app).
def reconcile_queue(env=None):
    return load(env).reconcile_queue


def poll_queue(env=None):
    return load(env).poll_queue


# Chalice needs the stream's ARN when app.py is imported, to describe the publisher's event source.
# `chalice package` gets this stand-in, which the merge template replaces with the table's
# StreamArn (deploy/template.py); `chalice deploy` needs the real one in ORDERS_STREAM_ARN.
STREAM_ARN_STAND_IN = "arn:aws:dynamodb:us-east-1:000000000000:table/alipay-orders/stream/set-by-the-template"


def orders_stream_arn(env=None):
    env = os.environ if env is None else env
    return env.get("ORDERS_STREAM_ARN") or STREAM_ARN_STAND_IN
