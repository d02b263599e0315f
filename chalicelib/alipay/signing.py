"""Strings-to-sign, RSA2 / RSA signatures and the legacy MD5 digest (protocol §2.2, §3.3, §8.2).

One canonical form serves every rule: parameters sorted by key, empty values left out,
`key=value` joined with `&`, raw (never URL-encoded) values. The rules differ only in what
they leave out:

- requests: `sign` (sign_type is signed);
- trade notifications and returns (V1): `sign` and `sign_type`;
- application-gateway messages (V2): `sign`;
- legacy MAPI (MD5): `sign` and `sign_type`, then the partner key appended.
"""
import base64
import binascii
import hashlib
import hmac

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from .errors import InvalidSignature

REQUEST_EXCLUDED = frozenset({"sign"})
NOTIFY_V1_EXCLUDED = frozenset({"sign", "sign_type"})
NOTIFY_V2_EXCLUDED = frozenset({"sign"})
MD5_EXCLUDED = frozenset({"sign", "sign_type"})

_HASHES = {"RSA2": hashes.SHA256, "RSA": hashes.SHA1}
_PADDING = padding.PKCS1v15()


class Signer:
    """What signs the merchant's strings-to-sign: `signature(content, sign_type)` -> raw bytes.

    The protocol only needs PKCS#1 v1.5 signatures (§2.2); where the private key lives (here, or
    in a hardware module that never lets it out) is the implementation's business. Implementations
    outside this package (chalicelib.signers) may refuse a sign_type they cannot produce.
    """

    def signature(self, content, sign_type):
        raise NotImplementedError


class LocalKeySigner(Signer):
    """The app private key loaded in this process (from the secret's `app_private_key`)."""

    def __init__(self, private_key):
        self.private_key = private_key

    def signature(self, content, sign_type):
        return self.private_key.sign(content, _PADDING, hash_for(sign_type))


def as_signer(key_or_signer):
    """A Signer from a Signer or from a bare private key object (the vectors sign with keys)."""
    return key_or_signer if isinstance(key_or_signer, Signer) else LocalKeySigner(key_or_signer)


def hash_for(sign_type):
    try:
        return _HASHES[sign_type]()
    except KeyError:
        raise InvalidSignature(f"unsupported sign_type {sign_type!r} (RSA2 or RSA)") from None


def canonical_string(params, excluded):
    """Sorted `key=value` pairs joined by `&`, raw values, empty values and `excluded` left out."""
    return "&".join(f"{key}={params[key]}" for key in sorted(params)
                    if key not in excluded and params[key] not in (None, ""))


def rsa_sign(signer, content, sign_type="RSA2"):
    """base64 (standard, one line) of the PKCS#1 v1.5 signature of `content` (bytes).

    `signer` is a Signer or a private key object.
    """
    return base64.b64encode(as_signer(signer).signature(content, sign_type)).decode("ascii")


def rsa_verify(public_keys, content, signature, sign_type="RSA2"):
    """True when `signature` (base64) verifies over `content` with any of `public_keys`.

    Never raises for bad input: a malformed signature is simply not valid (pitfall §9.6).
    A list of keys serves Alipay key rotation.
    """
    if not signature or not isinstance(signature, str):
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    algorithm = hash_for(sign_type)
    for key in public_keys:
        try:
            key.verify(raw, content, _PADDING, algorithm)
            return True
        except (_CryptoInvalidSignature, ValueError):
            continue
    return False


def sign_params(params, signer, sign_type="RSA2", charset="utf-8"):
    """The `sign` of a request: everything but `sign`, sign_type included (§2.2)."""
    return rsa_sign(signer, canonical_string(params, REQUEST_EXCLUDED).encode(charset), sign_type)


def verify_params(params, public_keys, sign_type, charset="utf-8", excluded=NOTIFY_V1_EXCLUDED):
    """Verify signed parameters as Alipay sends them, with the algorithm pinned by us.

    A `sign_type` in the parameters that differs from ours is refused rather than followed:
    letting the sender pick RSA (SHA-1) under an RSA2 configuration is a downgrade (§9.13).
    Raises InvalidSignature; returns nothing.
    """
    claimed = params.get("sign_type")
    if claimed and claimed != sign_type:
        raise InvalidSignature(f"sign_type {claimed} where {sign_type} is configured")
    signature = params.get("sign")
    if not signature:
        raise InvalidSignature("sign is missing")
    try:
        content = canonical_string(params, excluded).encode(charset)
    except UnicodeEncodeError:
        raise InvalidSignature(f"a value cannot be encoded in {charset}") from None
    if not rsa_verify(public_keys, content, signature, sign_type):
        raise InvalidSignature("signature does not verify")


# ---- legacy MAPI gateway (§8.2) ----------------------------------------------------------

def md5_sign(params, md5_key, charset="utf-8"):
    """md5(string-to-sign + key) in lowercase hex; the key is appended with no separator."""
    return hashlib.md5((canonical_string(params, MD5_EXCLUDED) + md5_key).encode(charset)).hexdigest()


def md5_verify(params, md5_key, charset="utf-8"):
    """Raises InvalidSignature unless `sign` is the MD5 of the parameters; constant-time."""
    signature = params.get("sign")
    if not signature:
        raise InvalidSignature("sign is missing")
    if params.get("sign_type", "MD5") != "MD5":
        raise InvalidSignature(f"sign_type {params.get('sign_type')} where MD5 is expected")
    try:
        expected = md5_sign(params, md5_key, charset)
    except UnicodeEncodeError:
        raise InvalidSignature(f"a value cannot be encoded in {charset}") from None
    if not hmac.compare_digest(expected.encode(), signature.lower().encode("ascii", "replace")):
        raise InvalidSignature("signature does not verify")
