"""The merchant secret: fetched from Secrets Manager, validated, parsed into key objects, cached.

Only this module knows the secret's JSON (contract, "The secret"). Parsing a PEM key costs
milliseconds, so the parsed config is what is cached, for SECRET_TTL_SECONDS per warm container.
"""
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from typing import Optional

from chalicelib.alipay import aes, keys
from chalicelib.alipay.errors import KeyFormatError
from chalicelib.alipay.pay import AppCredentials
from chalicelib.errors import Unauthorized, Unavailable


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


def parse_secret(text):
    """A MerchantConfig from the secret's JSON text, or MerchantConfigError with every reason."""
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

    private_key = None
    if field("app_private_key", required=True):
        try:
            private_key = keys.load_private_key(data["app_private_key"])
        except KeyFormatError as error:
            reasons.append(str(error))

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
                                   app_cert_sn=app_cert_sn, alipay_root_cert_sn=root_cert_sn),
        alipay_keys=tuple(alipay_keys),
        seller_id=field("seller_id"),
        api_token_hashes=tuple(t.lower() for t in tokens),
        partner=partner, md5_key=md5_key, alipay_cert_sn=alipay_cert_sn, aes_key=aes_key)


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

    def __init__(self, secrets_client_factory, clock=time.monotonic):
        self._client_factory = secrets_client_factory
        self._clock = clock
        self._lock = threading.Lock()
        self._cached = {}  # secret_id -> (config, fetched_at)

    def get(self, secret_id, ttl_seconds):
        with self._lock:
            hit = self._cached.get(secret_id)
            if hit and ttl_seconds > 0 and self._clock() - hit[1] < ttl_seconds:
                return hit[0]
        config = parse_or_unavailable(self.fetch_text(secret_id))
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


def parse_or_unavailable(text):
    try:
        return parse_secret(text)
    except MerchantConfigError as error:
        # Never echo the secret; the reasons name fields, not values.
        raise Unavailable(f"the merchant secret is invalid: {error}") from None
