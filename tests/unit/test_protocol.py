"""Protocol behaviour beyond the vectors: properties, bad input, time zones, amounts, keys."""
import base64
import datetime
import os
import subprocess
import sys
from decimal import Decimal
from urllib.parse import parse_qsl, quote_plus

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib import service
from chalicelib.alipay import gateway, keys, money, notify, pay, signing
from chalicelib.alipay.errors import (GatewayError, InvalidAmount, InvalidSignature, KeyFormatError,
                                      MalformedMessage, MessageTooLarge)
from tests.vectorfiles import ROOT_PATH, private_key, public_key, text

APP_KEY = private_key("node_app_private_key_pkcs1.pem")
APP_PUBLIC = [APP_KEY.public_key()]

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
# Any unicode a subject or passback value may hold, except surrogates (not encodable).
values = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
field_sets = st.dictionaries(names.filter(lambda n: n not in ("sign", "sign_type", "charset")), values,
                             min_size=1, max_size=12)


def signed_notification(fields):
    fields = dict(fields, sign_type="RSA2")
    content = signing.canonical_string(fields, signing.NOTIFY_V1_EXCLUDED).encode()
    fields["sign"] = signing.rsa_sign(APP_KEY, content)
    return fields


def is_valid(fields):
    try:
        signing.verify_params(fields, APP_PUBLIC, "RSA2")
        return True
    except InvalidSignature:
        return False


# ---- properties --------------------------------------------------------------------------

@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(field_sets)
def test_sign_then_verify_holds_for_any_unicode(fields):
    assert is_valid(signed_notification(fields))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(field_sets, st.data())
def test_changing_one_character_of_any_value_fails(fields, data):
    signed = signed_notification(fields)
    name = data.draw(st.sampled_from(sorted(fields)))
    value = signed[name]
    at = data.draw(st.integers(0, len(value) - 1))
    replacement = data.draw(st.characters(blacklist_categories=("Cs",)).filter(lambda c: c != value[at]))
    signed[name] = value[:at] + replacement + value[at + 1:]
    assert not is_valid(signed)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(field_sets, st.data())
def test_dropping_or_adding_a_non_empty_field_fails(fields, data):
    signed = signed_notification(fields)
    dropped = dict(signed)
    del dropped[data.draw(st.sampled_from(sorted(fields)))]
    assert not is_valid(dropped)
    extra = data.draw(names.filter(lambda n: n not in signed))
    assert not is_valid(dict(signed, **{extra: data.draw(values)}))
    # An added *empty* field is left out of the string: it changes nothing (contract, notify).
    assert is_valid(dict(signed, **{extra: ""}))


@settings(max_examples=60)
@given(field_sets)
def test_form_encode_then_parse_gives_the_same_fields(fields):
    body = pay.form_encode(dict(fields, charset="utf-8")).encode("ascii")
    parsed, codec = notify.parse_form(body)
    assert parsed == dict(fields, charset="utf-8") and codec == "utf-8"


@settings(max_examples=300)
@given(st.text(), st.sampled_from(["utf-8", "gbk"]))
def test_form_quoting_is_exactly_urllibs(text, charset):
    """pay.form_quote is a faster quote_plus: the same text, or the same refusal to encode."""
    try:
        expected = quote_plus(text, encoding=charset)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            pay.form_quote(text, charset)
        return
    assert pay.form_quote(text, charset) == expected


def test_form_quoting_refuses_what_the_charset_cannot_encode_as_urllib_does():
    for text, charset in (("\ud800", "utf-8"), ("a\udfffb", "utf-8"), ("\U0001f600", "gbk")):
        with pytest.raises(UnicodeEncodeError):
            quote_plus(text, encoding=charset)
        with pytest.raises(UnicodeEncodeError):
            pay.form_quote(text, charset)


@settings(max_examples=30)
@given(st.text(alphabet="一二三四五六七八九十商品测试 +%&=", min_size=1, max_size=20))
def test_gbk_bodies_round_trip(subject):
    body = pay.form_encode({"charset": "gbk", "subject": subject}, "gbk").encode("ascii")
    parsed, codec = notify.parse_form(body)
    assert parsed["subject"] == subject and codec == "gbk"


@settings(max_examples=25, deadline=None)
@given(st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2090, 1, 1),
                    timezones=st.sampled_from([datetime.timezone.utc, datetime.timezone(datetime.timedelta(hours=-7)),
                                               datetime.timezone(datetime.timedelta(hours=5, minutes=30))])))
def test_timestamp_is_beijing_time_whatever_the_input_zone(moment):
    expected = (moment.astimezone(datetime.timezone.utc) + datetime.timedelta(hours=8)).strftime("%Y-%m-%d %H:%M:%S")
    assert money.beijing_timestamp(moment) == expected


@pytest.mark.parametrize("text, utc", [
    ("2026-12-01 10:00:00", datetime.datetime(2026, 12, 1, 2, 0, 0)),
    ("2026-01-01 07:59:59.5", datetime.datetime(2025, 12, 31, 23, 59, 59, 500000)),
    ("2026-06-30 23:00:00.123456", datetime.datetime(2026, 6, 30, 15, 0, 0, 123456)),
    ("2026-6-3 9:05:0", datetime.datetime(2026, 6, 3, 1, 5, 0)),  # unpadded, as strptime read it
])
def test_alipay_times_are_read_as_beijing_time(text, utc):
    assert money.parse_beijing_time(text) == utc.replace(tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("text", ["", None, "2026-13-01 10:00:00", "2026-02-30 10:00:00", "2026-12-01T10:00:00",
                                  "2026-12-01 10:00:00.", "2026-12-01 10:00:00Z", "2026-12-01  10:00:00"])
def test_what_is_not_an_alipay_time_is_none(text):
    assert money.parse_beijing_time(text) is None


@settings(max_examples=50, deadline=None)
@given(st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2090, 1, 1),
                    timezones=st.sampled_from([datetime.timezone.utc, money.BEIJING])))
def test_stored_times_are_utc_to_the_millisecond_and_read_back(moment):
    text = service.iso(moment)
    assert text == moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert service.parse_iso(text) == moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    for other in (text[:-1], text[:-1] + "+08:00Z", text[:10] + "Z", text + "Z", text.replace("T", " ")):
        with pytest.raises(ValueError):
            service.parse_iso(other)


@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles", "Asia/Kolkata"])
def test_timestamp_ignores_the_process_tz(zone):
    """A fresh interpreter under another TZ signs the same Beijing time for the same instant."""
    code = ("import datetime; from chalicelib.alipay.money import beijing_timestamp;"
            "print(beijing_timestamp(datetime.datetime.fromtimestamp(1700000000, datetime.timezone.utc)));"
            "print(beijing_timestamp()[:13])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT_PATH, env=dict(os.environ, TZ=zone),
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "2023-11-15 06:13:20"
    now_beijing = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8)))
    assert out[1] in {now_beijing.strftime("%Y-%m-%d %H"),
                      (now_beijing - datetime.timedelta(minutes=1)).strftime("%Y-%m-%d %H")}


# ---- bad input ---------------------------------------------------------------------------

def test_truncated_base64_signature_is_invalid_not_an_exception():
    signed = signed_notification({"out_trade_no": "1", "total_amount": "1.00"})
    signed["sign"] = signed["sign"][:-7]
    assert not is_valid(signed)
    signed["sign"] = "%%%not base64%%%"
    assert not is_valid(signed)


def test_missing_sign_is_invalid():
    with pytest.raises(InvalidSignature, match="missing"):
        signing.verify_params({"a": "b"}, APP_PUBLIC, "RSA2")


def test_sign_type_rsa_under_rsa2_is_a_downgrade_and_fails():
    fields = {"out_trade_no": "1", "sign_type": "RSA"}
    fields["sign"] = signing.rsa_sign(APP_KEY, signing.canonical_string(fields, signing.NOTIFY_V1_EXCLUDED).encode(),
                                      "RSA")
    with pytest.raises(InvalidSignature, match="RSA where RSA2"):
        signing.verify_params(fields, APP_PUBLIC, "RSA2")
    signing.verify_params(fields, APP_PUBLIC, "RSA")  # the same message is fine where RSA is configured


def test_sign_type_absent_uses_the_configured_algorithm():
    fields = {"out_trade_no": "1"}
    fields["sign"] = signing.rsa_sign(APP_KEY, signing.canonical_string(fields, signing.NOTIFY_V1_EXCLUDED).encode())
    signing.verify_params(fields, APP_PUBLIC, "RSA2")
    with pytest.raises(InvalidSignature):
        signing.verify_params(fields, APP_PUBLIC, "RSA")


def test_non_utf8_bytes_under_utf8_charset_are_malformed():
    with pytest.raises(MalformedMessage, match="utf-8"):
        notify.parse_form(b"charset=utf-8&subject=%C4%E3%BA%C3%FF")


def test_empty_body_is_malformed():
    for body in (b"", b"   "):
        with pytest.raises(MalformedMessage, match="empty"):
            notify.parse_form(body)


def test_body_of_several_megabytes_is_refused_before_parsing():
    with pytest.raises(MessageTooLarge):
        notify.parse_form(b"a=" + b"x" * (4 * 1024 * 1024))


def test_repeated_key_is_an_error():
    with pytest.raises(MalformedMessage, match="repeated"):
        notify.parse_form(b"out_trade_no=1&total_amount=1.00&out_trade_no=2")
    with pytest.raises(MalformedMessage, match="repeated"):
        notify.fields_from_query({"out_trade_no": ["1", "2"]})


def test_field_without_equals_and_unknown_charset_are_malformed():
    with pytest.raises(MalformedMessage):
        notify.parse_form(b"out_trade_no")
    with pytest.raises(MalformedMessage, match="charset"):
        notify.parse_form(b"charset=latin-1&a=b")


def test_blank_values_are_kept_in_the_parse_and_left_out_of_the_string():
    fields, _ = notify.parse_form(b"a=1&b=&c=3")
    assert fields == {"a": "1", "b": "", "c": "3"}
    assert signing.canonical_string(fields, signing.NOTIFY_V1_EXCLUDED) == "a=1&c=3"


def test_plus_is_space_and_percent_2b_is_plus_and_passback_stays_encoded():
    fields, _ = notify.parse_form(b"subject=A%2BB+C&passback_params=x%253Dy&gmt_create=2018-07-10+14%3A50%3A18")
    assert fields == {"subject": "A+B C", "passback_params": "x%3Dy", "gmt_create": "2018-07-10 14:50:18"}


def test_notification_is_typed_with_decimal_amounts():
    note = notify.read_notification({"total_amount": "0.10", "refund_fee": "0.05", "trade_status": "TRADE_SUCCESS",
                                     "out_trade_no": "A1", "notify_id": "n1", "gmt_refund": "2024-01-01 12:00:00.123"})
    assert note.total_amount == Decimal("0.1") and isinstance(note.total_amount, Decimal)
    assert note.refund_fee == Decimal("0.05") and note.is_refund
    legacy = notify.read_notification({"total_fee": "88.80", "out_trade_no": "L1"})
    assert legacy.total_amount == Decimal("88.8") and not legacy.is_refund
    with pytest.raises(MalformedMessage):
        notify.read_notification({"total_amount": "1e999999999"})


# ---- amounts -----------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [("0.01", "0.01"), ("88.8", "88.80"), ("100000000", "100000000.00"),
                                            ("1", "1.00"), ("0.10", "0.10")])
def test_amounts_parse_and_go_out_with_two_decimals(value, expected):
    assert money.format_amount(money.parse_amount(value)) == expected


@pytest.mark.parametrize("value", ["0", "0.00", "0.001", "1.234", "100000000.01", "-1", "1e2", " 1", "01.00",
                                   "", "1.", ".5", "NaN", 88.8, 1, None])
def test_bad_amounts_are_refused(value):
    with pytest.raises(InvalidAmount):
        money.parse_amount(value)


# ---- keys --------------------------------------------------------------------------------

def test_public_key_where_a_private_one_belongs_is_named():
    with pytest.raises(KeyFormatError, match="public key"):
        keys.load_private_key(text("node_app_public_key.pem"))
    with pytest.raises(KeyFormatError, match="public key"):
        keys.load_private_key(text("node_app_public_key_oneline.pem"))


def test_private_key_where_a_public_one_belongs_is_named():
    with pytest.raises(KeyFormatError, match="private key"):
        keys.load_public_key(text("node_app_private_key_pkcs8.pem"))
    with pytest.raises(KeyFormatError, match="private key"):
        keys.load_public_key(text("node_app_private_key_pkcs8_oneline.pem"))


@pytest.mark.parametrize("bad", ["not a key at all!", "", "   ", "-----BEGIN PRIVATE KEY-----\nAAAA"])
def test_garbage_keys_are_named(bad):
    with pytest.raises(KeyFormatError):
        keys.load_private_key(bad)
    with pytest.raises(KeyFormatError):
        keys.load_public_key(bad)


def test_small_key_is_refused_by_default():
    with pytest.raises(KeyFormatError, match="1024 bits"):
        keys.load_private_key(text("cr_private_key_pkcs8.pem"))


def test_pasted_key_with_literal_backslash_n_loads():
    mangled = text("node_app_private_key_pkcs8.pem").replace("\n", "\\n")
    assert keys.same_key(keys.load_private_key(mangled), APP_KEY)


def test_alipay_key_equal_to_the_app_key_is_refused():
    with pytest.raises(KeyFormatError, match="app's own public key"):
        keys.check_not_app_key(APP_KEY, [public_key("response_alipay_public_key.pem"),
                                         public_key("node_app_public_key_oneline.pem")])
    keys.check_not_app_key(APP_KEY, [public_key("notify_v1_alipay_public_key.pem")])


def test_cert_mode_requests_carry_both_sns_and_sign_them():
    app_cert = keys.load_certificate(text("ys_appCertPublicKey.crt"))
    credentials = pay.AppCredentials(app_id="9021000122682882", private_key=private_key("ys_app_private_key_pkcs1.pem"),
                                     app_cert_sn=keys.cert_sn(app_cert),
                                     alipay_root_cert_sn=keys.root_cert_sn(text("ys_alipayRootCert.crt")))
    params = pay.signed_request(credentials, "alipay.trade.query", {"out_trade_no": "1"})
    assert params["app_cert_sn"] == "e90dd23a37c5c7b616e003970817ff82"
    assert params["alipay_root_cert_sn"] == "687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6"
    signing.verify_params(params, [app_cert.public_key()], "RSA2", excluded=signing.REQUEST_EXCLUDED)
    tampered = dict(params, app_cert_sn="0" * 32)
    with pytest.raises(InvalidSignature):
        signing.verify_params(tampered, [app_cert.public_key()], "RSA2", excluded=signing.REQUEST_EXCLUDED)


# ---- pay requests ------------------------------------------------------------------------

CREDENTIALS = pay.AppCredentials(app_id="2021000122671080", private_key=APP_KEY)


def _verify_request(params):
    signing.verify_params(params, APP_PUBLIC, "RSA2", params["charset"], excluded=signing.REQUEST_EXCLUDED)


@pytest.mark.parametrize("product", ["page", "wap", "app"])
def test_pay_requests_verify_and_sign_biz_content_as_sent(product):
    biz = pay.trade_biz(product, "T1", Decimal("88.8"), "测试 A+B", timeout_express="30m", quit_url="https://q/")
    params = pay.pay_request(CREDENTIALS, product, biz, "https://n/alipay/notify", "https://r/alipay/return")
    _verify_request(params)
    assert ("return_url" in params) is (product != "app")
    sent = dict(parse_qsl(pay.app_order_string(params), keep_blank_values=True))
    assert sent == params and sent["biz_content"] == pay.biz_json(biz)
    assert '"total_amount":"88.80"' in sent["biz_content"]
    assert ('"quit_url"' in sent["biz_content"]) is (product == "wap")
    assert pay.PRODUCTS[product][1] in sent["biz_content"]


def test_page_form_posts_every_signed_parameter():
    import html.parser

    params = pay.pay_request(CREDENTIALS, "page", pay.trade_biz("page", "T2", Decimal("1"), 'a "quoted" <subject>'),
                             "https://n/", "https://r/")
    form = pay.auto_submit_form("https://gw/gateway.do", params)

    class Inputs(html.parser.HTMLParser):
        found = {}

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "input" and attrs.get("type") == "hidden":
                self.found[attrs["name"]] = attrs["value"]

    parser = Inputs()
    parser.feed(form)
    assert parser.found == params
    _verify_request(parser.found)


def test_empty_optional_fields_are_never_sent():
    params = pay.pay_request(CREDENTIALS, "page", pay.trade_biz("page", "T3", Decimal("1"), "s", body=""), None, "")
    assert "notify_url" not in params and "return_url" not in params and '"body"' not in params["biz_content"]


def test_legacy_link_verifies_with_md5():
    params = pay.legacy_pay_params("2088000000000000", "k" * 32, "L1", "测试", Decimal("9.9"), "https://n/", "https://r/")
    assert params["total_fee"] == "9.90" and params["sign_type"] == "MD5"
    signing.md5_verify(params, "k" * 32)
    with pytest.raises(InvalidSignature):
        signing.md5_verify(dict(params, total_fee="0.01"), "k" * 32)


# ---- gateway responses: bad bodies ------------------------------------------------------

@pytest.mark.parametrize("body", ["", "<html>502 Bad Gateway</html>", "[1,2]", '{"alipay_trade_query_response":',
                                  '{"other_response":{"code":"10000"},"sign":"x"}', '{"a" 1}'])
def test_unusable_gateway_bodies_are_gateway_errors(body):
    with pytest.raises(GatewayError):
        gateway.verify_response(body, "alipay.trade.query", APP_PUBLIC)


def test_unsigned_error_response_is_an_error_not_data():
    body = '{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature"}}'
    with pytest.raises(GatewayError, match="isv.invalid-signature"):
        gateway.verify_response(body, "alipay.trade.query", APP_PUBLIC)


def test_response_signed_under_another_alipay_cert_is_refused():
    content = '{"code":"10000","msg":"Success"}'
    sign = signing.rsa_sign(APP_KEY, content.encode())
    body = f'{{"alipay_trade_query_response":{content},"alipay_cert_sn":"new","sign":"{sign}"}}'
    assert gateway.verify_response(body, "alipay.trade.query", APP_PUBLIC, alipay_cert_sn="new").code == "10000"
    with pytest.raises(GatewayError, match="certificate"):
        gateway.verify_response(body, "alipay.trade.query", APP_PUBLIC, alipay_cert_sn="old")


def test_fields_come_from_the_verified_node_only():
    """A forged duplicate node after the signed one is never read (fzlee#69)."""
    content = '{"code":"10000","trade_status":"WAIT_BUYER_PAY"}'
    sign = signing.rsa_sign(APP_KEY, content.encode())
    body = (f'{{"alipay_trade_query_response":{content},"sign":"{sign}",'
            f'"alipay_trade_query_response":{{"code":"10000","trade_status":"TRADE_SUCCESS"}}}}')
    assert gateway.verify_response(body, "alipay.trade.query", APP_PUBLIC).fields["trade_status"] == "WAIT_BUYER_PAY"


def test_generated_key_round_trip_in_every_form():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs1 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()).decode()
    pkcs8_der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    for form in (pkcs1, base64.b64encode(pkcs8_der).decode()):
        assert keys.same_key(keys.load_private_key(form), key)
    assert keys.same_key(keys.load_public_key(keys.spki_base64(key)), key)
