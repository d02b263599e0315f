"""Environment -> Settings, with the contract's defaults. Read when needed, never at import:
the Chalice test client and `chalice local` set the stage's environment per request."""
import os
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Settings:
    orders_table: str
    secret_id: str
    gateway: str
    mapi_gateway: str
    public_base_url: Optional[str]
    notify_url: Optional[str]
    return_redirect_url: Optional[str]
    secret_ttl_seconds: int
    gateway_read_timeout: float
    reconcile_queue: str
    poll_queue: str
    event_bus_name: str


def load(env=None):
    env = os.environ if env is None else env
    return Settings(
        orders_table=env.get("ORDERS_TABLE") or "alipay-orders",
        secret_id=env.get("ALIPAY_SECRET_ID") or "alipay/merchant",
        gateway=env.get("ALIPAY_GATEWAY") or "https://openapi.alipay.com/gateway.do",
        mapi_gateway=env.get("ALIPAY_MAPI_GATEWAY") or "https://mapi.alipay.com/gateway.do",
        public_base_url=(env.get("PUBLIC_BASE_URL") or "").rstrip("/") or None,
        notify_url=env.get("NOTIFY_URL") or None,
        return_redirect_url=env.get("RETURN_REDIRECT_URL") or None,
        secret_ttl_seconds=int(env.get("SECRET_TTL_SECONDS") or 300),
        gateway_read_timeout=float(env.get("GATEWAY_READ_TIMEOUT_SECONDS") or 8),
        reconcile_queue=reconcile_queue(env),
        poll_queue=poll_queue(env),
        event_bus_name=env.get("EVENT_BUS_NAME") or "chalice-alipay",
    )


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
