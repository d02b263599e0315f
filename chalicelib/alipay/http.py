"""Pooled HTTP to Alipay's gateways: one PoolManager per container, short timeouts, no retries
(the caller decides what a failure means)."""
import threading

import urllib3

from .errors import GatewayUnreachable

_pool = None
_lock = threading.Lock()


def pool():
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                _pool = urllib3.PoolManager(num_pools=4, maxsize=8, retries=False)
    return _pool


def get_text(url, connect_timeout=2.0, read_timeout=3.0):
    """(status, body text) of a GET; GatewayUnreachable when nothing usable came back in time."""
    try:
        response = pool().request("GET", url, timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
                                  redirect=False)
    except urllib3.exceptions.HTTPError as error:
        raise GatewayUnreachable(f"{type(error).__name__} from the gateway") from None
    return response.status, response.data.decode("utf-8", "replace")
