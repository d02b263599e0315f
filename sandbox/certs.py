"""Certificate mode (公钥证书模式, protocol §6), the sandbox's own PKI: a root bundle, Alipay
certificates (rotated on demand) and app certificates, all made with cryptography's x509
builder. Cert SNs are computed here as Alipay does, apart from the service's code."""
import datetime
import hashlib
import warnings

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

RSA_FAMILY = "1.2.840.113549.1.1"  # only roots signed in the RSA family count in the root SN (§6)
ORG = "Alipay Sandbox"


def name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Certification Authority"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def issue(subject, public_key, issuer_name, issuer_key, ca=False, days=3650):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def load_cert(text):
    return x509.load_pem_x509_certificate(text.encode())


def load_key(text):
    return serialization.load_pem_private_key(text.encode(), None)


def cert_sn(cert):
    """MD5 hex of the issuer DN (RFC 2253 order, no spaces) followed by the decimal serial (§6)."""
    return hashlib.md5((cert.issuer.rfc4514_string() + str(cert.serial_number)).encode()).hexdigest()


def split_pem(bundle):
    marker = "-----END CERTIFICATE-----"
    parts = bundle.replace("\r\n", "\n").split(marker)
    return [part[part.index("-----BEGIN"):] + marker + "\n" for part in parts if "-----BEGIN" in part]


def root_cert_sn(bundle):
    """The RSA-signed certificates' SNs in bundle order, joined with `_` (§6)."""
    sns = []
    for block in split_pem(bundle):
        try:
            with warnings.catch_warnings():  # Alipay's own ECDSA root has NULL parameters (cryptography#9253)
                warnings.simplefilter("ignore")
                cert = load_cert(block)
        except ValueError:
            continue  # a root cryptography cannot read (SM2) is not RSA-signed either
        if cert.signature_algorithm_oid.dotted_string.startswith(RSA_FAMILY):
            sns.append(cert_sn(cert))
    return "_".join(sns)


def new_pki():
    """A root bundle like Alipay's: an ECDSA-signed root first (not counted in the root SN),
    then the RSA root that issues every certificate; and a first Alipay certificate."""
    root_key = new_rsa_key()
    root = issue(name("Alipay Sandbox Root CA R1"), root_key.public_key(), name("Alipay Sandbox Root CA R1"),
                 root_key, ca=True)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_root = issue(name("Alipay Sandbox Root CA E1"), ec_key.public_key(), name("Alipay Sandbox Root CA E1"),
                    ec_key, ca=True)
    pki = {"root_key": key_pem(root_key), "root_bundle": pem(ec_root) + pem(root), "alipay_certs": {},
           "current_alipay_cert_sn": None}
    rotate_alipay_cert(pki)
    return pki


def rotate_alipay_cert(pki):
    """A new Alipay key and certificate become current; older ones stay downloadable (§6)."""
    root_key = load_key(pki["root_key"])
    root = load_cert(split_pem(pki["root_bundle"])[-1])
    key = new_rsa_key()
    cert = issue(name("Alipay Sandbox Public Key RSA2"), key.public_key(), root.subject, root_key, days=1825)
    sn = cert_sn(cert)
    pki["alipay_certs"][sn] = {"cert": pem(cert), "key": key_pem(key)}
    previous, pki["current_alipay_cert_sn"] = pki["current_alipay_cert_sn"], sn
    return sn, previous


def issue_app_cert(pki, app_id, public_key):
    root = load_cert(split_pem(pki["root_bundle"])[-1])
    cert = issue(name(app_id), public_key, root.subject, load_key(pki["root_key"]), days=1825)
    return pem(cert), cert_sn(cert)
