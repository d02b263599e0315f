"""Amounts and time as Alipay wants them (protocol §2.1, §2.5)."""
import datetime
import re
from decimal import Decimal

from .errors import InvalidAmount

MIN_AMOUNT = Decimal("0.01")
MAX_AMOUNT = Decimal("100000000")
_CENTS = Decimal("0.01")
_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,8})(\.[0-9]{1,2})?")
_REPORTED = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?")
BEIJING = datetime.timezone(datetime.timedelta(hours=8), "Asia/Shanghai")


def parse_amount(value):
    """A yuan amount from its string form: at most two decimals, 0.01 to 100000000.

    Only strings are taken: a float has already lost the amount (§2.5).
    """
    if not isinstance(value, str):
        raise InvalidAmount("an amount must be a string such as \"88.80\"")
    if not _AMOUNT.fullmatch(value):  # fullmatch: `$` would let a trailing newline through
        raise InvalidAmount(f"{value!r} is not a yuan amount with at most two decimals")
    amount = Decimal(value)
    if not MIN_AMOUNT <= amount <= MAX_AMOUNT:
        raise InvalidAmount(f"{value} is outside 0.01 to 100000000")
    return amount


def parse_reported_amount(value):
    """An amount Alipay reported; compared as a decimal, never as text (§3.4: 0.10 = 0.1)."""
    if not isinstance(value, str) or not _REPORTED.fullmatch(value):
        raise InvalidAmount(f"{value!r} is not an amount")
    return Decimal(value)


def format_amount(amount):
    """Two decimals, the form Alipay takes and we store."""
    return str(Decimal(amount).quantize(_CENTS))


def beijing_timestamp(now=None):
    """`yyyy-MM-dd HH:mm:ss` in Beijing time, whatever the host's zone (§2.1)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if now.tzinfo is None:
        raise ValueError("a timezone-aware time is needed")
    return now.astimezone(BEIJING).isoformat(" ", "seconds")[:19]


_GMT = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2}) ([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:\.([0-9]{1,6}))?")


def read_time(pattern, text, zone):
    """The time `pattern` (groups: year, month, day, hour, minute, second, fraction or None)
    matches as the whole of `text`, in `zone`; ValueError for anything else (a month 13 too).
    Faster than strptime, and as lenient about one-digit fields."""
    match = pattern.fullmatch(text)
    if match is None:
        raise ValueError(f"not a time in the expected layout: {text!r}")
    *fields, fraction = match.groups()
    return datetime.datetime(*map(int, fields), int((fraction or "0").ljust(6, "0")), tzinfo=zone)


def parse_beijing_time(value):
    """Alipay's `gmt_*` (Beijing time, maybe with `.S`) as an aware datetime, or None."""
    try:
        return read_time(_GMT, value, BEIJING) if value else None
    except ValueError:
        return None
