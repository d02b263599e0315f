"""Gateway responses: the signed node found as raw text, verified, then read (§5).

The signature covers the node's value exactly as it appears in the body. We find it with a
scan of the top-level object that knows JSON strings, so braces, quotes and the word "sign"
inside values cannot move its edges; business fields are parsed from the verified text only.
"""
import json
import re
from dataclasses import dataclass
from typing import Optional

from . import aes
from .errors import GatewayError, InvalidSignature
from .signing import rsa_verify

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_WHITESPACE = re.compile(r"\s*")
_SCALAR_END = re.compile(r"[,}\]\s]")


def _json(text):
    """json.loads for text from outside: anything malformed (a bad escape, a raw control character,
    nesting deep enough to exhaust the stack) is an answer we cannot read, never an exception
    that escapes."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise GatewayError("the gateway answer is not valid JSON") from None


def _skip_value(text, i):
    """Index just past the JSON value that starts at `i`."""
    if text[i] == '"':
        match = _STRING.match(text, i)
        if not match:
            raise GatewayError("unterminated string in the gateway answer")
        return match.end()
    if text[i] in "{[":
        depth = 0
        while i < len(text):
            char = text[i]
            if char == '"':
                i = _skip_value(text, i)
                continue
            if char in "{[":
                depth += 1
            elif char in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        raise GatewayError("unbalanced braces in the gateway answer")
    match = _SCALAR_END.search(text, i)
    return match.start() if match else len(text)


def top_level_values(text):
    """Each top-level key of a JSON object -> the raw text of its value."""
    i = _WHITESPACE.match(text, 0).end()
    if i >= len(text) or text[i] != "{":
        raise GatewayError("the gateway answer is not a JSON object")
    values = {}
    i += 1
    while True:
        i = _WHITESPACE.match(text, i).end()
        if i < len(text) and text[i] == "}":
            return values
        if i >= len(text) or text[i] != '"':
            raise GatewayError("the gateway answer is not a JSON object")
        end = _skip_value(text, i)
        key = _json(text[i:end])
        i = _WHITESPACE.match(text, end).end()
        if i >= len(text) or text[i] != ":":
            raise GatewayError("the gateway answer is not a JSON object")
        i = _WHITESPACE.match(text, i + 1).end()
        if i >= len(text):
            raise GatewayError("the gateway answer ends early")
        end = _skip_value(text, i)
        values.setdefault(key, text[i:end])  # the first occurrence is the one the scan signs
        i = _WHITESPACE.match(text, end).end()
        if i < len(text) and text[i] == ",":
            i += 1
        elif i < len(text) and text[i] == "}":
            return values
        else:
            raise GatewayError("the gateway answer is not a JSON object")


def response_node(method):
    return method.replace(".", "_") + "_response"


def extract_signed_content(text, method_or_node):
    """(node found, raw content, sign, alipay_cert_sn) of a gateway answer (§5.2)."""
    node = method_or_node if method_or_node.endswith("_response") else response_node(method_or_node)
    values = top_level_values(text)
    found = node if node in values else "error_response" if "error_response" in values else None
    if found is None:
        raise GatewayError(f"the gateway answer has neither {node} nor error_response")

    def string_value(name):
        raw = values.get(name)
        if raw is None or not raw.startswith('"'):
            return None
        value = _json(raw)
        return value if isinstance(value, str) else None

    return found, values[found], string_value("sign"), string_value("alipay_cert_sn")


@dataclass(frozen=True)
class GatewayResponse:
    node: str
    fields: dict
    alipay_cert_sn: Optional[str]

    @property
    def code(self):
        return self.fields.get("code")

    @property
    def sub_code(self):
        return self.fields.get("sub_code")


def verify_response(text, method, alipay_keys, sign_type="RSA2", charset="utf-8", aes_key=None,
                    alipay_cert_sn=None):
    """The verified business fields of a gateway answer; GatewayError when it cannot be trusted.

    `alipay_cert_sn`, in cert mode, is the SN of the Alipay certificate we hold: an answer signed
    under another one is refused (Alipay rotated its certificate, §6).
    """
    node, content, sign, answer_cert_sn = extract_signed_content(text, method)
    if alipay_cert_sn and answer_cert_sn and answer_cert_sn != alipay_cert_sn:
        raise GatewayError(f"the answer is signed under Alipay certificate {answer_cert_sn}, "
                           f"we hold {alipay_cert_sn}: download the new certificate")
    if not sign:
        # An error without sign cannot be verified: an error, never data (§5.2).
        detail = _unverified_detail(content)
        raise GatewayError(f"unsigned gateway answer{detail}")
    if not _verify_content(content, sign, alipay_keys, sign_type, charset):
        raise InvalidSignature("the gateway answer's signature does not verify")
    if content.startswith('"'):
        if aes_key is None:
            raise GatewayError("the answer is encrypted and no AES key is configured")
        content = aes.decrypt(aes_key, _json(content))
    fields = _json(content)
    if not isinstance(fields, dict):
        raise GatewayError("the signed content is not a JSON object")
    return GatewayResponse(node=node, fields=fields, alipay_cert_sn=answer_cert_sn)


def _verify_content(content, sign, alipay_keys, sign_type, charset):
    try:
        content.encode(charset)
    except UnicodeEncodeError:  # a lone surrogate, or a character the charset lacks: not what Alipay signed
        return False
    if rsa_verify(alipay_keys, content.encode(charset), sign, sign_type):
        return True
    # Java and PHP SDKs retry with `\/` unescaped: which form Alipay signs is not settled (§5.2).
    return "\\/" in content and rsa_verify(alipay_keys, content.replace("\\/", "/").encode(charset), sign, sign_type)


def _unverified_detail(content):
    try:
        fields = _json(content)
        return f" (code {fields.get('code')}, sub_code {fields.get('sub_code')}, unverified)"
    except (GatewayError, AttributeError):
        return ""
