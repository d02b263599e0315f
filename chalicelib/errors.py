"""The service's failure kinds. app.py maps them to HTTP in one place."""


class ServiceError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message, field=None, **details):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = {key: value for key, value in details.items() if value is not None}  # e.g. sub_code

    @property
    def public_message(self):
        """What the caller is told; the full message goes to the log."""
        return self.message


class InvalidRequest(ServiceError):
    status, code = 400, "invalid_request"


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class NotFound(ServiceError):
    status, code = 404, "not_found"


class IdempotencyConflict(ServiceError):
    status, code = 409, "idempotency_conflict"


class OrderNotClosable(ServiceError):
    status, code = 409, "order_not_closable"


class RefundNotAllowed(ServiceError):
    status, code = 422, "refund_not_allowed"


class PaymentDeclined(ServiceError):
    """Alipay declined a barcode payment for good (its sub_code and sub_msg are answered)."""
    status, code = 422, "payment_declined"


class NotSupported(ServiceError):
    status, code = 422, "not_supported"


class GatewayFailure(ServiceError):
    status, code = 502, "gateway_error"


class Unavailable(ServiceError):
    """DynamoDB, Secrets Manager or the legacy gateway cannot be reached: retry later.
    The message (which may name the secret or an AWS error code) is logged, never answered."""
    status, code = 503, "unavailable"
    public_message = "a service this API depends on is unavailable; retry later"


class InternalError(ServiceError):
    """A request that can never succeed (a DynamoDB ValidationException, a defect of ours)."""
    status, code = 500, "internal_error"
    public_message = "an internal error; quote the request_id when you report it"
