"""The merchant secret: fetched from Secrets Manager, validated, parsed into key objects, cached.

Only this module knows the secret's JSON (contract, "The secret"). Parsing a PEM key costs
milliseconds, so the parsed config is what is cached, for SECRET_TTL_SECONDS per warm container.
"""
import hashlib
import hmac
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Optional

from chalicelib.alipay import aes, keys
from chalicelib.alipay.errors import KeyFormatError
from chalicelib.alipay.pay import AppCredentials
from chalicelib.errors import Unauthorized, Unavailable
from chalicelib.signers import KmsSigner, LazyClient

_default_kms_client = LazyClient("kms")  # made at the first KMS signature, never at import


class MerchantConfigError(ValueError):
    """The secret is not usable; `reasons` lists every problem found."""

    def __init__(self, reasons):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class MerchantConfig:
    credentials: AppCredentials
    alipay_keys: tuple
    seller_id: Optional[str]
    api_token_hashes: tuple
    partner: Optional[str] = None
    md5_key: Optional[str] = None
    alipay_cert_sn: Optional[str] = None
    aes_key: Optional[bytes] = None

    @property
    def app_id(self):
        return self.credentials.app_id

    @property
    def sign_type(self):
        return self.credentials.sign_type

    @property
    def legacy_enabled(self):
        return bool(self.partner and self.md5_key)

    def authorize(self, token):
        """The actor (first 8 hex of the token's hash) for a valid API token; Unauthorized if not."""
        if not token:
            raise Unauthorized("a bearer token is required")
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        # Compare against every hash, always, in constant time: no early exit to time.
        matched = False
        for allowed in self.api_token_hashes:
            matched |= hmac.compare_digest(digest, allowed)
        if not matched:
            raise Unauthorized("the bearer token is not valid")
        return digest[:8]


def parse_secret(text, kms_client_factory=None):
    """A MerchantConfig from the secret's JSON text, or MerchantConfigError with every reason.

    Makes no AWS call: a KMS signer's client is made by `kms_client_factory` (default: one lazy
    client per container) at its first signature.
    """
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        raise MerchantConfigError(["the secret is not JSON"]) from None
    if not isinstance(data, dict):
        raise MerchantConfigError(["the secret is not a JSON object"])
    reasons = []

    def field(name, required=False):
        value = data.get(name)
        if value in (None, "", []):
            if required:
                reasons.append(f"{name} is missing")
            return None
        return value

    app_id = field("app_id", required=True)
    if app_id is not None and not (isinstance(app_id, str) and app_id.isdigit()):
        reasons.append("app_id must be the app's digits, as a string")
    sign_type = field("sign_type") or "RSA2"
    if sign_type not in ("RSA2", "RSA"):
        reasons.append("sign_type must be RSA2 or RSA")

    private_key = signer = None
    if field("app_signer") is not None:
        signer = _kms_signer(data["app_signer"], sign_type, kms_client_factory, reasons)
        if field("app_private_key"):
            reasons.append("give app_private_key or app_signer, not both")
    elif field("app_private_key"):
        try:
            private_key = keys.load_private_key(data["app_private_key"])
        except KeyFormatError as error:
            reasons.append(str(error))
    else:
        reasons.append("app_private_key is missing (or app_signer naming a KMS key)")

    app_cert_sn = root_cert_sn = alipay_cert_sn = None
    alipay_keys = []
    cert_fields = [name for name in ("app_cert", "alipay_cert", "alipay_root_cert") if field(name)]
    if cert_fields:
        if len(cert_fields) != 3:
            reasons.append("cert mode needs app_cert, alipay_cert and alipay_root_cert together")
        else:
            try:
                app_cert_sn = keys.cert_sn(keys.load_certificate(data["app_cert"], "app_cert"))
                alipay_cert = keys.load_certificate(data["alipay_cert"], "alipay_cert")
                alipay_cert_sn = keys.cert_sn(alipay_cert)
                alipay_keys.append(alipay_cert.public_key())
                root_cert_sn = keys.root_cert_sn(data["alipay_root_cert"])
            except KeyFormatError as error:
                reasons.append(str(error))
    else:
        given = field("alipay_public_key", required=True)
        for text_key in ([given] if isinstance(given, str) else given or []):
            try:
                alipay_keys.append(keys.load_public_key(text_key))
            except (KeyFormatError, TypeError) as error:
                reasons.append(str(error))
    if private_key is not None and alipay_keys:
        try:
            keys.check_not_app_key(private_key, alipay_keys)
        except KeyFormatError as error:
            reasons.append(str(error))

    tokens = field("api_tokens", required=True) or []
    if not isinstance(tokens, list) or not all(isinstance(t, str) and len(t) == 64 and _is_hex(t) for t in tokens):
        reasons.append("api_tokens must be a list of SHA-256 hex digests (python manage.py token)")
        tokens = []

    partner, md5_key = field("partner"), field("md5_key")
    if bool(partner) != bool(md5_key):
        reasons.append("partner and md5_key go together (legacy gateway)")
    if md5_key and (not isinstance(md5_key, str) or len(md5_key) != 32):
        reasons.append("md5_key must be the 32-character partner key")

    aes_key = None
    if field("aes_key"):
        try:
            aes_key = aes.load_aes_key(data["aes_key"])
        except KeyFormatError as error:
            reasons.append(str(error))

    if reasons:
        raise MerchantConfigError(reasons)
    return MerchantConfig(
        credentials=AppCredentials(app_id=app_id, private_key=private_key, sign_type=sign_type,
                                   app_cert_sn=app_cert_sn, alipay_root_cert_sn=root_cert_sn, signer=signer),
        alipay_keys=tuple(alipay_keys),
        seller_id=field("seller_id"),
        api_token_hashes=tuple(t.lower() for t in tokens),
        partner=partner, md5_key=md5_key, alipay_cert_sn=alipay_cert_sn, aes_key=aes_key)


# A key id, a key or alias ARN (any partition), or an alias name: what KMS Sign's KeyId takes.
_KMS_KEY_ID = re.compile(r"^(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:(key|alias)/[A-Za-z0-9/_-]+"
                         r"|alias/[A-Za-z0-9/_-]+|(mrk-)?[0-9a-f-]{32,36})$")


def _kms_signer(spec, sign_type, kms_client_factory, reasons):
    """`"app_signer": {"kms_key_id": ...}`: the app key held in AWS KMS (RSA2 only)."""
    key_id = spec.get("kms_key_id") if isinstance(spec, dict) else None
    if not (isinstance(key_id, str) and _KMS_KEY_ID.match(key_id)):
        reasons.append('app_signer must be {"kms_key_id": "<key ARN, key id or alias/...>"}')
        return None
    if sign_type != "RSA2":
        reasons.append("app_signer (a KMS key) signs RSA2 only: KMS has no SHA-1 signing, so sign_type must be RSA2")
    return KmsSigner(key_id, kms_client_factory or _default_kms_client)


def _is_hex(text):
    try:
        int(text, 16)
        return True
    except ValueError:
        return False


class MerchantSource:
    """One GetSecretValue per warm container until the TTL passes; the parsed config is cached.

    A secret that cannot be fetched, or does not parse, is Unavailable: the request is retried
    later (Alipay retries notifications), and nothing is changed meanwhile.
    """

    def __init__(self, secrets_client_factory, clock=time.monotonic, kms_client_factory=None):
        self._client_factory = secrets_client_factory
        self._kms_client_factory = kms_client_factory
        self._clock = clock
        self._lock = threading.Lock()
        self._cached = {}  # secret_id -> (config, fetched_at)

    def get(self, secret_id, ttl_seconds):
        with self._lock:
            hit = self._cached.get(secret_id)
            if hit and ttl_seconds > 0 and self._clock() - hit[1] < ttl_seconds:
                return hit[0]
        config = parse_or_unavailable(self.fetch_text(secret_id), self._kms_client_factory)
        with self._lock:
            self._cached[secret_id] = (config, self._clock())
        return config

    def fetch_text(self, secret_id):
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            return self._client_factory().get_secret_value(SecretId=secret_id)["SecretString"]
        except ClientError as error:
            raise Unavailable(f"secret {secret_id}: {error.response['Error'].get('Code')}") from None
        except BotoCoreError as error:
            raise Unavailable(f"Secrets Manager unreachable: {type(error).__name__}") from None
        except KeyError:
            raise Unavailable(f"secret {secret_id} has no SecretString") from None


def parse_or_unavailable(text, kms_client_factory=None):
    try:
        return parse_secret(text, kms_client_factory)
    except MerchantConfigError as error:
        # Never echo the secret; the reasons name fields, not values.
        raise Unavailable(f"the merchant secret is invalid: {error}") from None
