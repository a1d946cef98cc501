//! Verified decryption: the registry checks every block of a commit with this
//! before it accepts it, and decrypts stored files on demand.
//!
//! Given the commit's content length, the length of every block is known in
//! advance, so a missing, truncated, reordered or altered block is named.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce};

use crate::format::{BLOCK_OVERHEAD, EncryptionData, NONCE_LEN, REGION_LEN, nonce, region_count};
use crate::keys::KeyUnwrapper;
use crate::region::{CONTENT_KEY_LEN, ContentKey, version_prefix};

/// Why a file does not decrypt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// The metadata is wrong.
    #[error("bad EncryptionData: {0}")]
    Metadata(String),
    /// The content key does not unwrap, or is not a v2 payload.
    #[error("the content key cannot be recovered: {0}")]
    Key(String),
    /// Fewer or more blocks than the content length needs.
    #[error("{found} blocks for a content length of {length} bytes, which needs {expected}{which}")]
    BlockCount {
        /// Blocks received.
        found: u64,
        /// Blocks needed.
        expected: u64,
        /// The content length.
        length: u64,
        /// Which block is missing or extra, as text.
        which: String,
    },
    /// A block's length is not what the content length implies.
    #[error("block {index} is {found} bytes where {expected} are expected ({why})")]
    Length {
        /// Position in the commit.
        index: u64,
        /// Its length.
        found: usize,
        /// The length it must have.
        expected: usize,
        /// `truncated` or `too long`.
        why: &'static str,
    },
    /// A block carries another region's nonce.
    #[error("block {index} carries the nonce of region {region}: blocks are out of order")]
    Reordered {
        /// Position in the commit.
        index: u64,
        /// The region its nonce names.
        region: u64,
    },
    /// The block fails authentication.
    #[error("block {index} does not decrypt: it was altered, or sealed with another key")]
    Tampered {
        /// Position in the commit.
        index: u64,
    },
}

/// Opens the blocks of one file.
pub struct Decryptor {
    aead: LessSafeKey,
    content_length: u64,
}

impl Decryptor {
    /// Recovers the content key of `data` with `unwrapper`, for a file of
    /// `content_length` plaintext bytes.
    pub fn new(
        data: &EncryptionData,
        unwrapper: &KeyUnwrapper,
        content_length: u64,
    ) -> Result<Decryptor, DecryptError> {
        data.check().map_err(DecryptError::Metadata)?;
        if data.wrapped_content_key.key_id != unwrapper.kid() {
            return Err(DecryptError::Key(format!(
                "KeyId `{}` is not the file's key `{}`",
                data.wrapped_content_key.key_id,
                unwrapper.kid()
            )));
        }
        let wrapped = data.wrapped_key().map_err(DecryptError::Metadata)?;
        let payload = unwrapper
            .unwrap(&data.wrapped_content_key.algorithm, &wrapped)
            .map_err(|error| DecryptError::Key(error.to_string()))?;
        let prefix = version_prefix();
        if payload.len() != prefix.len() + CONTENT_KEY_LEN || payload[..prefix.len()] != prefix {
            return Err(DecryptError::Key(
                "the wrapped payload is not `2.0` and a 256-bit key".into(),
            ));
        }
        let key: [u8; CONTENT_KEY_LEN] = payload[prefix.len()..]
            .try_into()
            .expect("length checked above");
        Ok(Decryptor {
            aead: ContentKey::from_bytes(key).aead(),
            content_length,
        })
    }

    /// Blocks the content length needs.
    pub fn block_count(&self) -> u64 {
        region_count(self.content_length)
    }

    /// Checks that `found` blocks are what the content length needs.
    pub fn check_count(&self, found: u64) -> Result<(), DecryptError> {
        let expected = self.block_count();
        if found == expected {
            return Ok(());
        }
        let which = if found < expected {
            format!(": block {found} is missing")
        } else {
            format!(": block {expected} is extra")
        };
        Err(DecryptError::BlockCount {
            found,
            expected,
            length: self.content_length,
            which,
        })
    }

    /// The length block `index` must have.
    pub fn block_len(&self, index: u64) -> usize {
        let start = index * REGION_LEN as u64;
        let plain = self
            .content_length
            .saturating_sub(start)
            .min(REGION_LEN as u64) as usize;
        plain + BLOCK_OVERHEAD
    }

    /// Opens block `index` in place and returns its plaintext.
    pub fn open<'a>(&self, index: u64, block: &'a mut [u8]) -> Result<&'a [u8], DecryptError> {
        let expected = self.block_len(index);
        if block.len() != expected {
            let why = if block.len() < expected {
                "truncated"
            } else {
                "too long"
            };
            return Err(DecryptError::Length {
                index,
                found: block.len(),
                expected,
                why,
            });
        }
        let (nonce_bytes, sealed) = block.split_at_mut(NONCE_LEN);
        if nonce_bytes != nonce(index) {
            let mut region = [0u8; 8];
            region.copy_from_slice(&nonce_bytes[NONCE_LEN - 8..]);
            return Err(DecryptError::Reordered {
                index,
                region: u64::from_be_bytes(region),
            });
        }
        let nonce_value = Nonce::try_assume_unique_for_key(nonce_bytes)
            .map_err(|_| DecryptError::Tampered { index })?;
        self.aead
            .open_in_place(nonce_value, Aad::empty(), sealed)
            .map(|plain| &*plain)
            .map_err(|_| DecryptError::Tampered { index })
    }

    /// Decrypts a whole file from its blocks, in commit order.
    pub fn decrypt_all(&self, blocks: Vec<Vec<u8>>) -> Result<Vec<u8>, DecryptError> {
        self.check_count(blocks.len() as u64)?;
        let mut plaintext = Vec::with_capacity(self.content_length as usize);
        for (index, mut block) in blocks.into_iter().enumerate() {
            plaintext.extend_from_slice(self.open(index as u64, &mut block)?);
        }
        Ok(plaintext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyEncryptionKey, WrapAlgorithm, generate};
    use crate::region::FileEncryptor;

    fn encrypt(
        plaintext: &[u8],
        algorithm: WrapAlgorithm,
    ) -> (Vec<Vec<u8>>, EncryptionData, KeyUnwrapper) {
        let (public, private) = generate("kid-t", algorithm).unwrap();
        let kek = KeyEncryptionKey::from_jwk_json(public.as_bytes()).unwrap();
        let encryptor = FileEncryptor::new();
        let blocks = plaintext
            .chunks(REGION_LEN)
            .enumerate()
            .map(|(index, region)| {
                let mut block = vec![0; NONCE_LEN];
                block.extend_from_slice(region);
                encryptor.seal(index as u64, &mut block);
                block
            })
            .collect();
        let data = encryptor.encryption_data(&kek).unwrap();
        (
            blocks,
            data,
            KeyUnwrapper::from_jwk_json(private.as_bytes()).unwrap(),
        )
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
    }

    #[test]
    fn files_round_trip_at_region_edges() {
        for len in [
            0,
            1,
            REGION_LEN - 1,
            REGION_LEN,
            REGION_LEN + 1,
            2 * REGION_LEN + 123,
        ] {
            let plaintext = sample(len);
            let (blocks, data, unwrapper) = encrypt(&plaintext, WrapAlgorithm::A256Kw);
            let decryptor = Decryptor::new(&data, &unwrapper, len as u64).unwrap();
            assert_eq!(
                decryptor.decrypt_all(blocks).unwrap(),
                plaintext,
                "length {len}"
            );
        }
    }

    #[test]
    fn damage_is_found_and_named() {
        let plaintext = sample(2 * REGION_LEN + 100);
        let (blocks, data, unwrapper) = encrypt(&plaintext, WrapAlgorithm::RsaOaep);
        let decryptor = Decryptor::new(&data, &unwrapper, plaintext.len() as u64).unwrap();

        let mut tampered = blocks.clone();
        tampered[1][5000] ^= 1;
        let error = decryptor.decrypt_all(tampered).unwrap_err();
        assert_eq!(error, DecryptError::Tampered { index: 1 });
        assert!(error.to_string().contains("block 1 does not decrypt"));

        let mut swapped = blocks.clone();
        swapped.swap(0, 1);
        assert_eq!(
            decryptor.decrypt_all(swapped).unwrap_err(),
            DecryptError::Reordered {
                index: 0,
                region: 1
            }
        );

        let mut missing = blocks.clone();
        missing.remove(1);
        let error = decryptor.decrypt_all(missing).unwrap_err();
        assert!(error.to_string().contains("block 2 is missing"), "{error}");

        let mut truncated = blocks.clone();
        truncated[2].truncate(60);
        let error = decryptor.decrypt_all(truncated).unwrap_err();
        assert!(
            matches!(
                error,
                DecryptError::Length {
                    index: 2,
                    why: "truncated",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn the_wrong_key_or_metadata_is_refused() {
        let plaintext = sample(10);
        let (_, data, _) = encrypt(&plaintext, WrapAlgorithm::A256Kw);
        let (_, other_private) = generate("kid-t", WrapAlgorithm::A256Kw).unwrap();
        let other = KeyUnwrapper::from_jwk_json(other_private.as_bytes()).unwrap();
        assert!(matches!(
            Decryptor::new(&data, &other, 10),
            Err(DecryptError::Key(_))
        ));
        let mut bad = data.clone();
        bad.encrypted_region_info.data_length = 1024;
        let (_, _, unwrapper) = encrypt(&plaintext, WrapAlgorithm::A256Kw);
        assert!(matches!(
            Decryptor::new(&bad, &unwrapper, 10),
            Err(DecryptError::Metadata(_))
        ));
    }
}
