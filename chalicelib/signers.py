"""The app key held in AWS KMS: a Signer whose private key never leaves the hardware module.

KMS signs with `RSASSA_PKCS1_V1_5_SHA_256` on an `RSA_2048` key, which is exactly Alipay's RSA2
(SHA256withRSA, protocol §2.2), and `GetPublicKey` answers the DER SubjectPublicKeyInfo whose
base64 is what Alipay's console takes as the app public key. KMS has no SHA-1 signing, so a KMS
key signs RSA2 only. The secret names the key (`"app_signer": {"kms_key_id": ...}`); only
chalicelib.merchant reads that, and builds a KmsSigner with a lazily created KMS client.
"""
import hashlib
import threading

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay import keys, signing
from chalicelib.alipay.errors import KeyFormatError
from chalicelib.errors import Unavailable

SIGNING_ALGORITHM = "RSASSA_PKCS1_V1_5_SHA_256"
KEY_SPEC, KEY_USAGE = "RSA_2048", "SIGN_VERIFY"
# KMS Sign takes at most 4,096 bytes of message with MessageType=RAW; a longer message is sent as
# its SHA-256 digest with MessageType=DIGEST, which KMS signs without hashing again (KMS API
# reference, Sign: "Message"). Neither moto nor botocore enforces the limit (traps.md), so we do.
RAW_MESSAGE_LIMIT = 4096


class KmsSigner(signing.Signer):
    """One `kms:Sign` call per signature; nothing cached, nothing secret held here."""

    def __init__(self, key_id, client_factory):
        self.key_id = key_id
        self._client_factory = client_factory

    def signature(self, content, sign_type):
        if sign_type != "RSA2":
            raise ValueError(f"a KMS key signs RSA2 only, not {sign_type} (KMS has no SHA-1 signing)")
        if len(content) <= RAW_MESSAGE_LIMIT:
            message, message_type = content, "RAW"
        else:
            message, message_type = hashlib.sha256(content).digest(), "DIGEST"
        answer = self._call("sign", KeyId=self.key_id, Message=message, MessageType=message_type,
                            SigningAlgorithm=SIGNING_ALGORITHM)
        return answer["Signature"]

    def public_key(self):
        """(RSA public key, GetPublicKey's answer); raises ValueError when the key cannot sign RSA2."""
        answer = self._call("get_public_key", KeyId=self.key_id)
        problems = []
        # CustomerMasterKeySpec is KeySpec's deprecated name; KMS still answers both, moto only the old one.
        spec = answer.get("KeySpec") or answer.get("CustomerMasterKeySpec")
        if spec != KEY_SPEC:
            problems.append(f"is {spec}, not {KEY_SPEC}")
        if answer.get("KeyUsage") != KEY_USAGE:
            problems.append(f"has KeyUsage {answer.get('KeyUsage')}, not {KEY_USAGE}")
        if SIGNING_ALGORITHM not in answer.get("SigningAlgorithms", []):
            problems.append(f"does not sign with {SIGNING_ALGORITHM}")
        if problems:
            raise ValueError(f"the KMS key {self.key_id} " + " and ".join(problems) + " (RSA2 needs both)")
        key = serialization.load_der_public_key(answer["PublicKey"])
        if not isinstance(key, rsa.RSAPublicKey):  # guaranteed by RSA_2048; checked for the type
            raise ValueError(f"the KMS key {self.key_id} has no RSA public key")
        return key, answer

    def _call(self, method, **arguments):
        """A KMS call; any failure to get an answer is Unavailable (503: retry later), named by its code."""
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            return getattr(self._client_factory(), method)(**arguments)
        except ClientError as error:
            raise Unavailable(f"KMS {method} on {self.key_id}: {error.response['Error'].get('Code')}") from None
        except BotoCoreError as error:
            raise Unavailable(f"KMS unreachable: {type(error).__name__}") from None


def check_kms_signer(signer, alipay_public_keys):
    """Reasons the KMS key cannot serve as the app key: wrong kind, a signature that does not
    verify with its own public key, or its public key given as Alipay's (the key mix-up, §2.3).
    Costs one GetPublicKey and one Sign; for `manage.py check` and `put-secret`, never per request."""
    try:
        public, _ = signer.public_key()
        probe = b"app_id=2021000000000000&biz_content={}&method=chalice.alipay.check&sign_type=RSA2"
        signed = signing.rsa_verify([public], probe, signing.rsa_sign(signer, probe, "RSA2"), "RSA2")
    except (Unavailable, ValueError) as error:
        return [str(error)]
    if not signed:
        return [f"a signature made by the KMS key {signer.key_id} does not verify with its public key"]
    try:
        keys.check_not_app_key(public, alipay_public_keys)
    except KeyFormatError as error:
        return [str(error)]
    return []


class LazyClient:
    """A boto3 client made on first use, once, from a session of its own under a lock: boto3's
    default session is not safe to create clients from in parallel (see service.Backend)."""

    def __init__(self, name):
        self.name = name
        self._client = None
        self._lock = threading.Lock()

    def __call__(self):
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config
                    # A signature is on the request's path: fail fast, retry once (as the service's clients do).
                    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
                    self._client = boto3.session.Session().client(self.name, config=config)
        return self._client
