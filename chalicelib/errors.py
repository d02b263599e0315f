"""The service's failure kinds. app.py maps them to HTTP in one place."""


class ServiceError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message, field=None):
        super().__init__(message)
        self.message = message
        self.field = field


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


class NotSupported(ServiceError):
    status, code = 422, "not_supported"


class GatewayFailure(ServiceError):
    status, code = 502, "gateway_error"


class Unavailable(ServiceError):
    """DynamoDB, Secrets Manager or the legacy gateway cannot be reached: retry later."""
    status, code = 503, "unavailable"
