"""Test support: merchant keys, and Alipay's side of the protocol (signed notifications and returns) built from the protocol rules."""
import hashlib
import json
import os
import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay import keys, pay, signing


def new_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(private_key):
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()


class Merchant:
    """A merchant's secret and the keys on both sides: ours (app) and Alipay's."""

    def __init__(self, app_id="2021000000000001", seller_id="2088000000000001", legacy=True):
        self.app_key = new_key()
        self.alipay_key = new_key()
        self.token = secrets.token_urlsafe(24)
        self.app_id, self.seller_id = app_id, seller_id
        self.partner = "2088000000000009"
        self.md5_key = "m" * 32
        self.secret = {
            "app_id": app_id, "app_private_key": pem(self.app_key),
            "alipay_public_key": keys.spki_base64(self.alipay_key), "seller_id": seller_id,
            "sign_type": "RSA2", "api_tokens": [hashlib.sha256(self.token.encode()).hexdigest()],
        }
        if legacy:
            self.secret.update(partner=self.partner, md5_key=self.md5_key)

    @property
    def auth(self):
        return {"Authorization": f"Bearer {self.token}"}

    def put(self, secrets_client, secret_id):
        try:
            secrets_client.create_secret(Name=secret_id, SecretString=json.dumps(self.secret))
        except secrets_client.exceptions.ResourceExistsException:
            secrets_client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(self.secret))

    # ---- Alipay's side ---------------------------------------------------------------------

    def notification_fields(self, out_trade_no, total_amount, trade_status="TRADE_SUCCESS", notify_id=None, **extra):
        fields = {
            "notify_time": "2026-11-27 13:00:00", "notify_type": "trade_status_sync",
            "notify_id": notify_id or secrets.token_hex(12), "app_id": self.app_id, "auth_app_id": self.app_id,
            "charset": "utf-8", "version": "1.0", "trade_no": "2026112722001400000000000001",
            "out_trade_no": out_trade_no, "buyer_id": "2088102177846880", "seller_id": self.seller_id,
            "trade_status": trade_status, "total_amount": total_amount, "receipt_amount": total_amount,
            "subject": "测试 A+B", "gmt_create": "2026-11-27 12:59:00", "gmt_payment": "2026-11-27 12:59:30",
            "fund_bill_list": json.dumps([{"amount": total_amount, "fundChannel": "ALIPAYACCOUNT"}],
                                         separators=(",", ":")),
        }
        fields.update(extra)
        return {key: value for key, value in fields.items() if value is not None}

    def sign_notification(self, fields, key=None, sign_type="RSA2", charset="utf-8"):
        """Sign as Alipay does (V1: sign and sign_type left out) and form-encode in `charset`."""
        fields = dict(fields, sign_type=sign_type)
        content = signing.canonical_string(fields, signing.NOTIFY_V1_EXCLUDED).encode(charset)
        fields["sign"] = signing.rsa_sign(key or self.alipay_key, content, sign_type)
        return pay.form_encode(fields, charset).encode("ascii")

    def notification(self, out_trade_no, total_amount, trade_status="TRADE_SUCCESS", **extra):
        return self.sign_notification(self.notification_fields(out_trade_no, total_amount, trade_status, **extra))

    def legacy_notification(self, out_trade_no, total_fee, trade_status="TRADE_FINISHED", notify_id=None):
        fields = {"notify_type": "trade_status_sync", "notify_id": notify_id or secrets.token_hex(12),
                  "out_trade_no": out_trade_no, "trade_no": "2026112700000000000000000009",
                  "trade_status": trade_status, "total_fee": total_fee, "seller_id": self.partner,
                  "buyer_id": "2088102177846880", "_input_charset": "utf-8", "subject": "旧 A+B"}
        fields["sign"] = signing.md5_sign(fields, self.md5_key)
        fields["sign_type"] = "MD5"
        return pay.form_encode(fields).encode("ascii")

    def return_query(self, out_trade_no, total_amount):
        fields = {"charset": "utf-8", "out_trade_no": out_trade_no, "method": "alipay.trade.page.pay.return",
                  "total_amount": total_amount, "trade_no": "2026112722001400000000000001",
                  "auth_app_id": self.app_id, "version": "1.0", "app_id": self.app_id, "sign_type": "RSA2",
                  "seller_id": self.seller_id, "timestamp": "2026-11-27 13:00:10"}
        content = signing.canonical_string(fields, signing.NOTIFY_V1_EXCLUDED).encode()
        fields["sign"] = signing.rsa_sign(self.alipay_key, content)
        return fields


def set_environment(values):
    """Set environment variables; returns a function that restores them."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update({key: str(value) for key, value in values.items()})

    def restore():
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return restore
