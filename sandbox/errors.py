"""Alipay's answers that are not `10000`, with the codes and messages of the public list
(opendocs common/02km9f, as cited in protocol §5.3)."""

MESSAGES = {"20000": "Service Currently Unavailable", "40001": "Missing Required Arguments",
            "40002": "Invalid Arguments", "40004": "Business Failed"}

# sub_msg of the business codes the sandbox answers (refund, close, precreate, query; §5.3, §3.6).
SUB_MESSAGES = {
    "ACQ.TRADE_NOT_EXIST": "交易不存在",
    "ACQ.TRADE_HAS_SUCCESS": "交易已被支付",
    "ACQ.TRADE_HAS_CLOSE": "交易已经关闭",
    "ACQ.TRADE_HAS_FINISHED": "交易已完结",
    "ACQ.TRADE_STATUS_ERROR": "交易状态不合法",
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": "退款金额超限",
    "ACQ.DISCORDANT_REPEAT_REQUEST": "不一致的请求",
    "ACQ.SYSTEM_ERROR": "系统错误",
    "ACQ.INVALID_PARAMETER": "参数无效",
    "ACQ.CONTEXT_INCONSISTENT": "交易信息被篡改",
    "ACQ.SELLER_BALANCE_NOT_ENOUGH": "卖家余额不足",
    "ACQ.TRADE_NOT_ALLOW_REFUND": "当前交易不允许退款",
    "ACQ.REASON_TRADE_REFUND_FEE_ERR": "退款金额无效",
}


class AlipayError(Exception):
    """An answer with Alipay's code, msg, sub_code and sub_msg."""

    def __init__(self, code, msg, sub_code, sub_msg):
        super().__init__(sub_msg)
        self.fields = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}

    @property
    def code(self):
        return self.fields["code"]


def failure(code, sub_code, sub_msg=None):
    return AlipayError(code, MESSAGES.get(code, "Business Failed"), sub_code,
                       sub_msg or SUB_MESSAGES.get(sub_code, sub_code))


def business(sub_code, sub_msg=None):
    """A `40004`: the request was valid and refused (§5.3)."""
    return failure("40004", sub_code, sub_msg)


def missing(name, sub_msg):
    return failure("40001", f"isv.missing-{name}", sub_msg)


def invalid(name, sub_msg):
    return failure("40002", f"isv.invalid-{name}", sub_msg)
