"""The protocol's failure kinds. Each is a ValueError so that callers that only care
"was this input acceptable" can catch one thing; the service maps each kind to HTTP."""


class AlipayError(ValueError):
    """Base of every protocol error."""


class KeyFormatError(AlipayError):
    """A key or certificate that cannot be used; the message names the problem."""


class InvalidSignature(AlipayError):
    """A signature is missing, malformed or does not verify."""


class MalformedMessage(AlipayError):
    """A body or query string that cannot be parsed as Alipay sends it."""


class MessageTooLarge(MalformedMessage):
    """A body over the size we accept."""


class InvalidAmount(AlipayError):
    """An amount that is not a yuan string with at most two decimals in Alipay's range."""


class GatewayError(AlipayError):
    """A gateway answer that is an error, or cannot be trusted."""


class GatewayUnreachable(GatewayError):
    """No answer from a gateway in time: the outcome is unknown, try again later."""


class GatewayRefused(GatewayError):
    """A verified answer saying the request was not processed (40001 missing or 40002 invalid
    parameters, 40006 permissions): nothing happened at Alipay (§5.3)."""

    def __init__(self, message, code, sub_code):
        super().__init__(message)
        self.code, self.sub_code = code, sub_code
