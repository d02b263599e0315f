"""The legacy MAPI gateway's `notify_verify` check (§8.3)."""
import re
from urllib.parse import urlencode

_TRUE = re.compile(r"true$", re.I)


def notify_verify_url(mapi_gateway, partner, notify_id):
    # notify_id is passed on as received (already decoded once): no second encoding (§8.3).
    return f"{mapi_gateway}?{urlencode({'service': 'notify_verify', 'partner': partner})}&notify_id={notify_id}"


def notify_verify_says_true(body):
    """The legacy demo's rule: the answer must end in `true`, any case."""
    return bool(_TRUE.search((body or "").strip()))
