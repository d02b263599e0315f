"""Checks of the text fields callers send, shared by the use cases that take them."""
import re

from chalicelib.errors import InvalidRequest

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def checked_text(body, name, limit, required=False):
    """A text field: 1 to `limit` characters, no control characters (nothing like a newline is
    smuggled into what Alipay receives). None when absent and not required."""
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not value.strip():
        raise InvalidRequest(f"{name} must be a string of 1 to {limit} characters", name)
    if _CONTROL.search(value):
        raise InvalidRequest(f"{name} must not contain control characters", name)
    return value


def no_nulls(body):
    """An optional field is left out, never sent as null (a null is a client's mistake to hear of)."""
    for name, value in body.items():
        if value is None:
            raise InvalidRequest(f"{name[:64]} must not be null: leave it out", name[:64] or "body")
