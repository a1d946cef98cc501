"""Decrypts a file corral uploaded, with the Azure Storage SDK's own reader.

    azure_decrypt.py CIPHERTEXT ENCRYPTION_DATA_JSON PRIVATE_JWK_JSON CONTENT_LENGTH OUT

The SDK asks its caller for a key-encryption-key object (get_kid, unwrap_key);
this one unwraps with the registry's private JWK through `cryptography`. Every
other step (metadata parsing, version prefix check, nonce validation, AES-GCM
per region) is azure-storage-blob's client-side encryption v2 reader.
"""

import base64
import json
import sys

from azure.storage.blob._encryption import _GCMRegionNonceValidator, decrypt_blob
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def number(text):
    return int.from_bytes(b64url(text), "big")


class JwkKeyEncryptionKey:
    def __init__(self, jwk):
        self.jwk = jwk

    def get_kid(self):
        return self.jwk["kid"]

    def unwrap_key(self, key, algorithm):
        if self.jwk["kty"] == "oct":
            assert algorithm == "A256KW", algorithm
            return aes_key_unwrap(b64url(self.jwk["k"]), key)
        public = rsa.RSAPublicNumbers(number(self.jwk["e"]), number(self.jwk["n"]))
        private = rsa.RSAPrivateNumbers(
            number(self.jwk["p"]), number(self.jwk["q"]), number(self.jwk["d"]),
            number(self.jwk["dp"]), number(self.jwk["dq"]), number(self.jwk["qi"]), public,
        ).private_key()
        digest = {"RSA-OAEP": hashes.SHA1(), "RSA-OAEP-256": hashes.SHA256()}[algorithm]
        return private.decrypt(key, padding.OAEP(mgf=padding.MGF1(algorithm=digest), algorithm=digest, label=None))


def main():
    ciphertext_path, metadata_path, jwk_path, length, out_path = sys.argv[1:6]
    with open(ciphertext_path, "rb") as f:
        content = f.read()
    with open(metadata_path) as f:
        metadata = f.read()
    with open(jwk_path) as f:
        kek = JwkKeyEncryptionKey(json.load(f))
    plaintext = decrypt_blob(
        require_encryption=True,
        key_encryption_key=kek,
        key_resolver=None,
        content=content,
        start_offset=0,
        end_offset=int(length),
        response_headers={"x-ms-meta-encryptiondata": metadata},
        nonce_validator=_GCMRegionNonceValidator(),
    )
    with open(out_path, "wb") as f:
        f.write(plaintext)


if __name__ == "__main__":
    main()
