"""Downloads a blob corral committed into Azure Blob Storage (or Azurite) and
decrypts it with the Azure Storage SDK's own client-side decryption.

    azure_download.py ACCOUNT_URL CONTAINER BLOB PRIVATE_JWK_JSON OUT

The account key comes from AZURE_STORAGE_KEY; the account name is the last
segment of ACCOUNT_URL (Azurite: http://127.0.0.1:PORT/devstoreaccount1).
Nothing of corral's is used: `BlobClient.download_blob` reads the blob's
`encryptiondata` metadata, unwraps the content key with the key-encryption
key (the same JWK unwrapper as azure_decrypt.py) and decrypts every region,
with `require_encryption=True`, so an unencrypted blob is refused.
"""

import json
import os
import sys

from azure.storage.blob import BlobClient

from azure_decrypt import JwkKeyEncryptionKey


def main():
    account_url, container, blob, jwk_path, out_path = sys.argv[1:6]
    with open(jwk_path) as f:
        kek = JwkKeyEncryptionKey(json.load(f))
    account = account_url.rstrip("/").rsplit("/", 1)[-1]
    client = BlobClient(
        account_url=account_url,
        container_name=container,
        blob_name=blob,
        credential={"account_name": account, "account_key": os.environ["AZURE_STORAGE_KEY"]},
        require_encryption=True,
        key_encryption_key=kek,
    )
    plaintext = client.download_blob().readall()
    with open(out_path, "wb") as f:
        f.write(plaintext)


if __name__ == "__main__":
    main()
