"""Alipay's clock: Beijing time (protocol §2.1), and the expiry of unpaid trades (§3.5).

Trades age on a clock that an admin call can move forward (`POST /sandbox/clock`), so that a
30-minute timeout can be seen in a test without waiting 30 minutes. The gateway's check of a
request's `timestamp` keeps using the real time: it judges the caller's clock, not the trades'."""
import datetime
import re

BEIJING = datetime.timezone(datetime.timedelta(hours=8))
FORMAT = "%Y-%m-%d %H:%M:%S"
# timeout_express: 1m-15d in m, h, d, or 1c ("today": closes at midnight whenever it was created).
TIMEOUT_EXPRESS = re.compile(r"^([1-9][0-9]*)([mhdc])$")
UNITS = {"m": 60, "h": 3600, "d": 86400}
LONGEST = datetime.timedelta(days=15)


def real_now():
    return datetime.datetime.now(BEIJING)


def stamp(moment, millis=False):
    text = moment.astimezone(BEIJING).strftime(FORMAT)
    return text + f".{moment.microsecond // 1000:03d}" if millis else text


def parse_stamp(text):
    """`yyyy-MM-dd HH:mm:ss` Beijing; None when it is not one."""
    try:
        return datetime.datetime.strptime(text, FORMAT).replace(tzinfo=BEIJING)
    except (TypeError, ValueError):
        return None


class Clock:
    def __init__(self, offset_seconds=0.0):
        self.offset = datetime.timedelta(seconds=offset_seconds)
        self.stopped_at = None

    def now(self):
        return (self.stopped_at or real_now()) + self.offset

    def stop(self):
        """From now on the trades age only when advanced (tests: no assertion races the real time)."""
        self.stopped_at = real_now()

    def advance(self, seconds):
        self.offset += datetime.timedelta(seconds=float(seconds))


class BadExpiry(ValueError):
    pass


def expiry(created, biz):
    """When an unpaid trade closes: `time_expire` (absolute Beijing time) when given, else
    `timeout_express` counted from the trade's creation; Alipay's documentation says time_expire
    wins when both are sent. Neither: Alipay's documented default of 15d."""
    if biz.get("time_expire"):
        moment = parse_stamp(biz["time_expire"])
        if moment is None:
            # Older documentation shows yyyy-MM-dd HH:mm; Alipay still takes it.
            try:
                moment = datetime.datetime.strptime(biz["time_expire"], "%Y-%m-%d %H:%M").replace(tzinfo=BEIJING)
            except ValueError:
                raise BadExpiry("time_expire 格式错误") from None
        return moment
    text = biz.get("timeout_express")
    if not text:
        return created + LONGEST
    match = TIMEOUT_EXPRESS.match(str(text))
    if not match:
        raise BadExpiry("timeout_express 格式错误")
    number, unit = int(match.group(1)), match.group(2)
    if unit == "c":
        if number != 1:
            raise BadExpiry("timeout_express 格式错误")
        midnight = created.astimezone(BEIJING).replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight + datetime.timedelta(days=1)
    length = datetime.timedelta(seconds=number * UNITS[unit])
    if not datetime.timedelta(minutes=1) <= length <= LONGEST:
        raise BadExpiry("timeout_express 超出范围 1m-15d")
    return created + length
