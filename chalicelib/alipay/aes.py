"""AES content encryption, `encrypt_type=AES`: AES-CBC, zero IV, PKCS#7, base64 (§7)."""
import base64
import binascii

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import GatewayError, KeyFormatError

_ZERO_IV = bytes(16)


def load_aes_key(key_base64):
    try:
        key = base64.b64decode(key_base64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise KeyFormatError("the AES key is not base64") from None
    if len(key) not in (16, 24, 32):
        raise KeyFormatError(f"the AES key has {len(key)} bytes; 16 (AES-128) expected")
    return key


def encrypt(key, plaintext):
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV)).encryptor()
    return base64.b64encode(encryptor.update(data) + encryptor.finalize()).decode("ascii")


def decrypt(key, ciphertext_base64):
    try:
        data = base64.b64decode(ciphertext_base64, validate=True)
        decryptor = Cipher(algorithms.AES(key), modes.CBC(_ZERO_IV)).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        padded = decryptor.update(data) + decryptor.finalize()
        return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise GatewayError("the encrypted content cannot be decrypted with our AES key") from None
