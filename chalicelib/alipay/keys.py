"""Loading the keys and certificates Alipay integrations come with (protocol §2.3, §6).

Alipay's key tool emits bare one-line base64 bodies, PKCS#1 or PKCS#8; consoles show the
Alipay public key as a one-line SPKI body; people paste keys with mangled newlines. All of
those load here, and anything else fails with a message that says what is wrong.
"""
import base64
import binascii
import hashlib
import re
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import KeyFormatError

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_CERT_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", re.S)
# Signature algorithms of the RSA family; only those roots count in alipay_root_cert_sn (§6).
_RSA_SIGNATURE_OID_PREFIX = "1.2.840.113549.1.1"


def _der_from_text(text, what):
    """The DER bytes and PEM label (None for a bare body) of a key given as text."""
    if not isinstance(text, str) or not text.strip():
        raise KeyFormatError(f"{what} is empty")
    # Keys pasted through JSON or environment variables often carry literal "\n".
    text = text.replace("\\n", "\n").strip()
    match = _PEM_BLOCK.search(text)
    label, body = (match.group(1), match.group(2)) if match else (None, text)
    if match is None and "-----" in text:
        raise KeyFormatError(f"{what} has a broken PEM armor")
    body = re.sub(r"\s+", "", body)
    try:
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{what} is not base64 (PEM or Alipay's one-line form expected)") from None
    if not der:
        raise KeyFormatError(f"{what} is empty")
    return der, label


def load_private_key(text, min_bits=2048):
    """An RSA private key from PEM or one-line base64, PKCS#1 or PKCS#8."""
    what = "the app private key"
    der, label = _der_from_text(text, what)
    if label and ("PUBLIC" in label or label == "CERTIFICATE"):
        raise KeyFormatError(f"{what} is a public key or certificate; the private key belongs here")
    try:
        # DER PKCS#8 and PKCS#1 ("traditional") both load here.
        key = serialization.load_der_private_key(der, None)
    except (ValueError, TypeError):
        if _try_public(der) is not None:
            raise KeyFormatError(f"{what} is a public key; the private key belongs here") from None
        raise KeyFormatError(f"{what} is not an RSA private key in PKCS#1 or PKCS#8") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFormatError(f"{what} is not an RSA key")
    if key.key_size < min_bits:
        raise KeyFormatError(f"{what} has {key.key_size} bits; at least {min_bits} are needed")
    return key


def _try_public(der):
    try:
        return serialization.load_der_public_key(der)
    except (ValueError, TypeError):
        pass
    try:
        return x509.load_der_x509_certificate(der).public_key()
    except ValueError:
        return None


def load_public_key(text, what="the Alipay public key"):
    """An RSA public key from SPKI PEM, one-line SPKI base64, PKCS#1 PEM or a certificate."""
    der, label = _der_from_text(text, what)
    if label and "PRIVATE" in label:
        raise KeyFormatError(f"{what} is a private key; only the public key belongs here")
    key = None
    if label == "RSA PUBLIC KEY":
        try:
            key = serialization.load_pem_public_key(text.replace("\\n", "\n").encode())
        except ValueError:
            key = None
    else:
        key = _try_public(der)
    if key is None:
        try:
            serialization.load_der_private_key(der, None)
        except (ValueError, TypeError):
            raise KeyFormatError(f"{what} is not an RSA public key (SPKI) or certificate") from None
        raise KeyFormatError(f"{what} is a private key; only the public key belongs here")
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyFormatError(f"{what} is not an RSA key")
    return key


def spki_der(key):
    """The DER SubjectPublicKeyInfo of a public key, or of a private key's public half."""
    if isinstance(key, rsa.RSAPrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def spki_base64(key):
    """The one-line form the Alipay console takes and shows."""
    return base64.b64encode(spki_der(key)).decode()


def spki_sha256(key):
    return hashlib.sha256(spki_der(key)).hexdigest()


def same_key(a, b):
    return spki_der(a) == spki_der(b)


def check_not_app_key(app_private_key, alipay_public_keys):
    """Refuse the most common mistake: the app's own public key given as Alipay's (§2.3)."""
    for key in alipay_public_keys:
        if same_key(app_private_key, key):
            raise KeyFormatError(
                "the Alipay public key is the app's own public key: copy the 支付宝公钥 "
                "(Alipay public key) from the console, not the app public key you uploaded")


# ---- certificates (cert mode, §6) -------------------------------------------------------

def load_certificate(text, what="the certificate"):
    data = text.encode() if isinstance(text, str) else text
    blocks = _CERT_BLOCK.findall(data.replace(b"\r\n", b"\n"))
    if not blocks:
        raise KeyFormatError(f"{what} is not a PEM certificate")
    try:
        return x509.load_pem_x509_certificate(blocks[0])
    except ValueError:
        raise KeyFormatError(f"{what} cannot be parsed") from None


def cert_sn(cert):
    """md5(issuer DN in RFC 2253 order + serial in decimal), lowercase hex (§6)."""
    return hashlib.md5((cert.issuer.rfc4514_string() + str(cert.serial_number)).encode()).hexdigest()


def root_cert_sn(bundle_text):
    """The SNs of the RSA-signed roots of a bundle, in file order, joined with "_" (§6).

    Certificates `cryptography` cannot read (SM2 or ECDSA roots in some versions) are skipped:
    the rule leaves them out anyway.
    """
    data = bundle_text.encode() if isinstance(bundle_text, str) else bundle_text
    serials = []
    for block in _CERT_BLOCK.findall(data.replace(b"\r\n", b"\n")):
        try:
            with warnings.catch_warnings():
                # Ant's Java-made roots carry a NULL parameter cryptography warns about.
                warnings.simplefilter("ignore")
                cert = x509.load_pem_x509_certificate(block)
                oid = cert.signature_algorithm_oid.dotted_string
        except ValueError:
            continue
        if oid.startswith(_RSA_SIGNATURE_OID_PREFIX):
            serials.append(cert_sn(cert))
    if not serials:
        raise KeyFormatError("the Alipay root certificate bundle holds no RSA-signed certificate")
    return "_".join(serials)
