"""Alipay's side of the protocol, written apart from chalicelib.alipay on purpose: the sandbox
checks the service, so it must not share the service's code (and its bugs). Only the standard
library and `cryptography`; tested against the same vectors."""
import base64
import binascii
import hashlib
import hmac
import json
from urllib.parse import parse_qsl, quote, quote_plus

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

HASHES = {"RSA2": hashes.SHA256, "RSA": hashes.SHA1}


def string_to_sign(params, leave_out):
    pairs = sorted((k, v) for k, v in params.items() if k not in leave_out and v != "" and v is not None)
    return "&".join(f"{k}={v}" for k, v in pairs)


def rsa_sign(private_key, text, sign_type="RSA2", charset="utf-8"):
    signature = private_key.sign(text.encode(charset), padding.PKCS1v15(), HASHES[sign_type]())
    return base64.b64encode(signature).decode()


def rsa_verify(public_key, text, signature, sign_type="RSA2", charset="utf-8"):
    try:
        public_key.verify(base64.b64decode(signature, validate=True), text.encode(charset), padding.PKCS1v15(),
                          HASHES[sign_type]())
        return True
    except (InvalidSignature, binascii.Error, ValueError, KeyError, UnicodeEncodeError):
        return False


def md5_sign(params, key, charset="utf-8"):
    return hashlib.md5((string_to_sign(params, {"sign", "sign_type"}) + key).encode(charset)).hexdigest()


def md5_ok(params, key, charset="utf-8"):
    return hmac.compare_digest(md5_sign(params, key, charset), params.get("sign", ""))


def encode(params, charset="utf-8"):
    return "&".join(f"{quote_plus(k)}={quote_plus(v, encoding=charset)}" for k, v in params.items())


def percent_encode(text, charset="utf-8"):
    """Every reserved byte as %XX, `/` and `+` included."""
    return quote(text, safe="", encoding=charset)


def decode(text, charset="utf-8"):
    """Form fields (last one wins on repeats: the sandbox is lenient where Alipay is)."""
    return dict(parse_qsl(text, keep_blank_values=True, encoding=charset))


def public_key_from_text(text):
    text = text.strip()
    if "BEGIN" not in text:
        text = "-----BEGIN PUBLIC KEY-----\n" + text + "\n-----END PUBLIC KEY-----\n"
    return serialization.load_pem_public_key(text.encode())


def public_key_line(private_key):
    der = private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def signed_response(private_key, method, content, sign_type="RSA2", charset="utf-8", alipay_cert_sn=None):
    """A gateway answer: `{"<method>_response": {...}, "sign": "..."}`, signed over the node
    text's bytes in the request's charset (§5.2); cert mode adds a top-level alipay_cert_sn (§5.1)."""
    node = method.replace(".", "_") + "_response"
    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    cert = ',"alipay_cert_sn":"%s"' % alipay_cert_sn if alipay_cert_sn else ""
    return '{"%s":%s%s,"sign":"%s"}' % (node, text, cert, rsa_sign(private_key, text, sign_type, charset))
