"""The gateway client against a scripted HTTP server playing Alipay (its key: the vectors' node key)."""
import json
from urllib.parse import parse_qsl

import pytest

from chalicelib.alipay import aes, signing
from chalicelib.alipay.client import GatewayClient, GatewayUnknown, refund_biz
from chalicelib.alipay.errors import GatewayError, InvalidSignature
from chalicelib.alipay.pay import AppCredentials
from tests.httpfake import FakeServer
from tests.vectorfiles import private_key, public_key

ALIPAY = private_key("node_app_private_key_pkcs1.pem")
ALIPAY_PUBLIC = [public_key("node_app_public_key.pem")]
APP = private_key("ys_app_private_key_pkcs1.pem")
CREDENTIALS = AppCredentials(app_id="2021000122671080", private_key=APP)


def signed(node, content, sign_first=False, extra=""):
    sign = signing.rsa_sign(ALIPAY, content.encode())
    if sign_first:
        return f'{{"sign":"{sign}"{extra},"{node}":{content}}}'
    return f'{{"{node}":{content}{extra},"sign":"{sign}"}}'


class Alipay:
    """Answers each POST with the next scripted (status, body bytes, content type, delay)."""

    def __init__(self, script):
        self.script = list(script)
        self.fake = FakeServer(lambda method, path, body: self.script.pop(0), "/gateway.do")
        self.url = self.fake.url

    @property
    def requests(self):
        return [(content_type, body) for _, _, content_type, body in self.fake.requests]

    def close(self):
        self.fake.close()


def answer(body, status=200, delay=0.0, content_type="application/json;charset=utf-8"):
    return status, body.encode("utf-8") if isinstance(body, str) else body, content_type, delay


@pytest.fixture
def gateway(request):
    fakes = []

    def make(*script, **client_options):
        fake = Alipay(script)
        fakes.append(fake)
        return fake, GatewayClient(fake.url, CREDENTIALS, ALIPAY_PUBLIC, **client_options)

    yield make
    for fake in fakes:
        fake.close()


QUERY_OK = '{"code":"10000","msg":"Success","out_trade_no":"T1","trade_status":"TRADE_SUCCESS","total_amount":"1.00"}'


def test_a_signed_answer_is_read_from_the_verified_node(gateway):
    fake, client = gateway(answer(signed("alipay_trade_query_response", QUERY_OK)))
    response = client.query("T1")
    assert response.code == "10000" and response.fields["trade_status"] == "TRADE_SUCCESS"
    content_type, body = fake.requests[0]
    assert content_type == "application/x-www-form-urlencoded;charset=utf-8"
    sent = dict(parse_qsl(body.decode()))
    signing.verify_params(sent, [APP.public_key()], "RSA2", excluded=signing.REQUEST_EXCLUDED)
    assert json.loads(sent["biz_content"]) == {"out_trade_no": "T1"}


def test_tampered_signature_is_refused(gateway):
    body = signed("alipay_trade_query_response", QUERY_OK).replace("TRADE_SUCCESS", "TRADE_FINISHED")
    _, client = gateway(answer(body))
    with pytest.raises(InvalidSignature):
        client.query("T1")


def test_sign_before_the_node_and_braces_and_sign_inside_strings(gateway):
    content = '{"code":"10000","msg":"Success","body":"a}b{c \\"sign\\":\\"x\\"","out_trade_no":"T1"}'
    _, client = gateway(answer(signed("alipay_trade_query_response", content, sign_first=True)))
    assert client.query("T1").fields["body"] == 'a}b{c "sign":"x"'


def test_escaped_slashes_retry(gateway):
    plain = '{"code":"10000","msg":"Success","qr_code":"https://qr.alipay.com/x"}'
    sign = signing.rsa_sign(ALIPAY, plain.encode())
    body = '{"alipay_trade_precreate_response":%s,"sign":"%s"}' % (plain.replace("/", "\\/"), sign)
    _, client = gateway(answer(body))
    assert client.precreate("T1", "1.00", "s").fields["qr_code"] == "https://qr.alipay.com/x"


def test_signed_error_response_is_an_error_with_its_code(gateway):
    content = '{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id","sub_msg":"bad"}'
    _, client = gateway(answer(signed("error_response", content)))
    with pytest.raises(GatewayError, match="isv.invalid-app-id"):
        client.query("T1")


def test_business_failure_is_data(gateway):
    content = '{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"no"}'
    _, client = gateway(answer(signed("alipay_trade_query_response", content)))
    response = client.query("T1")
    assert response.code == "40004" and response.sub_code == "ACQ.TRADE_NOT_EXIST"


def test_20000_is_retried_once_with_the_same_request_then_succeeds(gateway):
    unknown = '{"code":"20000","msg":"Service Currently Unavailable","sub_code":"ACQ.SYSTEM_ERROR"}'
    fake, client = gateway(answer(signed("alipay_trade_query_response", unknown)),
                           answer(signed("alipay_trade_query_response", QUERY_OK)))
    assert client.query("T1").code == "10000"
    assert fake.requests[0] == fake.requests[1]  # the very same parameters and signature


def test_20000_twice_is_unknown(gateway):
    unknown = '{"code":"20000","msg":"Service Currently Unavailable","sub_code":"ACQ.SYSTEM_ERROR"}'
    _, client = gateway(answer(signed("alipay_trade_refund_response", unknown)),
                        answer(signed("alipay_trade_refund_response", unknown)))
    with pytest.raises(GatewayUnknown):
        client.refund("T1", refund_biz("T1", "1.00", "R1"))


def test_timeout_is_unknown_and_bounded_by_the_time_left(gateway):
    # The answer comes after 3 s and is valid: only a timeout that works turns it into GatewayUnknown.
    _, client = gateway(answer(signed("alipay_trade_query_response", QUERY_OK), delay=3), read_timeout=0.5)
    with pytest.raises(GatewayUnknown):
        client.query("T1")
    # With the default 8 s read timeout, 1.2 s left in the invocation is what cuts the wait.
    _, short = gateway(answer(signed("alipay_trade_query_response", QUERY_OK), delay=3), time_left=lambda: 1.2)
    with pytest.raises(GatewayUnknown):
        short.query("T1")
    _, none_left = gateway(time_left=lambda: 0.3)
    with pytest.raises(GatewayUnknown, match="no time left"):
        none_left.query("T1")


@pytest.mark.parametrize("body,content_type", [
    (b"<html>502 Bad Gateway</html>", "text/html"),
    ("{\"error_response\":{\"code\":\"40002\",\"sub_msg\":\"签名错误\"}}".encode("gbk"), "application/json;charset=GBK"),
    (b"", "application/json"),
])
def test_non_json_and_unsigned_gbk_error_bodies_are_clear_errors(gateway, body, content_type):
    _, client = gateway(answer(body, content_type=content_type))
    with pytest.raises(GatewayError):
        client.query("T1")


def test_http_5xx_is_unknown(gateway):
    _, client = gateway(answer("oops", status=503))
    with pytest.raises(GatewayUnknown):
        client.query("T1")


def test_cert_mode_refuses_an_answer_under_another_certificate(gateway):
    body = signed("alipay_trade_query_response", QUERY_OK, extra=',"alipay_cert_sn":"rotated"')
    _, client = gateway(answer(body), alipay_cert_sn="ours")
    with pytest.raises(GatewayError, match="rotated"):
        client.query("T1")


def test_aes_encrypts_biz_content_and_decrypts_the_answer(gateway):
    key = aes.load_aes_key("aYA0GP8JEW+D7/UFaskCWA==")
    ciphertext = aes.encrypt(key, QUERY_OK)
    sign = signing.rsa_sign(ALIPAY, f'"{ciphertext}"'.encode())
    fake, client = gateway(answer(f'{{"alipay_trade_query_response":"{ciphertext}","sign":"{sign}"}}'), aes_key=key)
    assert client.query("T1").fields["trade_status"] == "TRADE_SUCCESS"
    sent = dict(parse_qsl(fake.requests[0][1].decode()))
    assert sent["encrypt_type"] == "AES" and aes.decrypt(key, sent["biz_content"]) == '{"out_trade_no":"T1"}'
