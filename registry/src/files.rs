//! Files: Initialize (a key-encryption key per file, its private half kept
//! here), blocks in the file store ([`crate::blobs`]), and a commit that
//! reads back, decrypts and checks every block before it accepts, whichever
//! store holds them. Committed files are kept as ciphertext + metadata, as
//! the real service keeps them, and decrypted on demand.

use crate::blobs::{BlobError, BlockId, Placed};
use crate::params;
use crate::store::Tx;
use bytes::Bytes;
use corral_envelope::decrypt::Decryptor;
use corral_envelope::{EncryptionData, KeyUnwrapper, MAX_BLOCK_LEN};
use sha2::{Digest, Sha256};

use crate::store::{self, FileRow, Store, now_ms};
use crate::wire::{
    ApiError, ApiResult, Code, CompleteFileBody, InitializeBody, bad, conflict, not_found,
};

/// The upload kinds and the job type each belongs to.
pub const KINDS: [(&str, &str); 3] = [
    ("media", "mediarequest"),
    ("thumbnail", "thumbnail"),
    ("discovery", "discovery"),
];

/// Largest discovery or thumbnail file the registry checks in memory.
const MAX_SMALL_FILE: u64 = 64 << 20;

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::Internal, format!("storage failed: {error}"))
}

/// Checks a client-chosen id for path characters.
pub fn check_id(what: &str, id: &str) -> ApiResult<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "{what} `{}` has characters ids never have",
            id.escape_default()
        )))
    }
}

/// Decodes a block id: standard padded base64 of at most 64 bytes.
fn decode_block_id(id: &str) -> ApiResult<BlockId> {
    BlockId::parse(id).map_err(bad)
}

/// Decodes the block ids of a commit.
fn decode_block_ids(ids: &[String]) -> ApiResult<Vec<BlockId>> {
    ids.iter().map(|id| decode_block_id(id)).collect()
}

/// Initialize{Media,Thumbnail,Discovery}Upload.
pub fn initialize(
    tx: &Tx<'_>,
    job_id: &str,
    kind: &str,
    body: &InitializeBody,
    file_id: &str,
    (public, private): (String, String),
) -> ApiResult<serde_json::Value> {
    let job = store::job(tx, job_id)?.ok_or_else(|| not_found(format!("no job {job_id}")))?;
    let Some((_, job_type)) = KINDS.iter().find(|(name, _)| *name == kind) else {
        return Err(not_found(format!("no upload kind `{kind}`")));
    };
    if !job.is_locked_by(&body.lock_token, now_ms()) {
        return Err(conflict(format!(
            "the lock on job {job_id} is not held by this token"
        )));
    }
    if job.job_type != *job_type {
        return Err(bad(format!(
            "a {} job cannot upload a {kind} file",
            job.job_type
        )));
    }
    if body.file_name.trim().is_empty()
        || body.file_name.len() > 255
        || body.file_name.contains(['/', '\\'])
    {
        return Err(bad("fileName must be a plain name of 1 to 255 bytes"));
    }
    if !body.content_type.contains('/') {
        return Err(bad(format!(
            "contentType `{}` is not a MIME type",
            body.content_type
        )));
    }
    tx.execute(
        "INSERT INTO files (file_id, job_id, lock_token, kind, file_name, content_type, device_id, private_jwk, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![file_id, job_id, body.lock_token, kind, body.file_name, body.content_type, body.device_id, private, now_ms()],
    )?;
    serde_json::from_str(&public).map_err(internal)
}

/// Whether the lock a file was initialized under is still held.
fn lock_holds(tx: &Tx<'_>, file: &FileRow) -> ApiResult<bool> {
    let job = store::job(tx, &file.job_id)?.ok_or_else(|| internal("a file without its job"))?;
    Ok(!file.abandoned && job.is_locked_by(&file.lock_token, now_ms()))
}

/// Checks that a block may be stored and records it; returns its id.
pub fn check_block(
    tx: &Tx<'_>,
    file_id: &str,
    block_id: &str,
    length: usize,
) -> ApiResult<BlockId> {
    let file = store::file(tx, file_id)?.ok_or_else(|| not_found(format!("no file {file_id}")))?;
    if length > MAX_BLOCK_LEN {
        return Err(ApiError::new(
            Code::TooLarge,
            format!("a block is at most {MAX_BLOCK_LEN} bytes, this one {length}"),
        ));
    }
    if file.committed {
        return Err(conflict(format!("file {file_id} is already committed")));
    }
    if !lock_holds(tx, &file)? {
        return Err(conflict(format!(
            "the lock file {file_id} was initialized under is gone"
        )));
    }
    let id = decode_block_id(block_id)?;
    match file.block_id_len {
        Some(len) if len as usize != id.bytes().len() => {
            return Err(bad(format!(
                "block id `{block_id}` decodes to {} bytes but this file's block ids decode to {len}",
                id.bytes().len()
            )));
        }
        Some(_) => {}
        None => {
            tx.execute(
                "UPDATE files SET block_id_len = ?2 WHERE file_id = ?1",
                params![file_id, id.bytes().len() as i64],
            )?;
        }
    }
    tx.execute(
        "INSERT INTO blocks (file_id, block_id, length) VALUES (?1, ?2, ?3)
         ON CONFLICT (file_id, block_id) DO UPDATE SET length = excluded.length",
        params![file_id, block_id, length as i64],
    )?;
    Ok(id)
}

/// Stores a block that [`check_block`] accepted, in the file store.
pub fn write_block(store: &Store, file_id: &str, id: &BlockId, block: &[Bytes]) -> ApiResult<()> {
    store
        .blobs()
        .put_block(file_id, id, block)
        .map_err(internal)
}

/// What a commit needs from the database before the slow part.
pub struct CommitPlan {
    file: FileRow,
    /// The blocks in commit order, where each sits in the committed file.
    blocks: Vec<Placed>,
    data: EncryptionData,
    /// Whether the same commit was already accepted (an idempotent repeat).
    pub already: bool,
}

/// Phase one of a commit: checks everything but the bytes.
pub fn plan_commit(tx: &Tx<'_>, file_id: &str, body: &CompleteFileBody) -> ApiResult<CommitPlan> {
    let file = store::file(tx, file_id)?.ok_or_else(|| not_found(format!("no file {file_id}")))?;
    let data: EncryptionData =
        serde_json::from_value(body.encryption_data.clone()).map_err(|error| {
            bad(format!(
                "encryptionData is not Azure's EncryptionData: {error}"
            ))
        })?;
    let block_ids_json = serde_json::to_string(&body.block_ids).map_err(internal)?;
    let data_json = serde_json::to_string(&data).map_err(internal)?;
    if file.committed {
        let same = file.commit_token.as_deref() == Some(body.lock_token.as_str())
            && file.block_ids.as_deref() == Some(block_ids_json.as_str())
            && file.encryption_data.as_deref() == Some(data_json.as_str())
            && file.content_length == Some(body.content_length as i64);
        if same {
            return Ok(CommitPlan {
                file,
                blocks: Vec::new(),
                data,
                already: true,
            });
        }
        return Err(conflict(format!(
            "file {file_id} was already committed with another block list"
        )));
    }
    if file.lock_token != body.lock_token || !lock_holds(tx, &file)? {
        return Err(conflict(format!(
            "the lock file {file_id} was initialized under is gone"
        )));
    }
    data.check()
        .map_err(|why| bad(format!("encryptionData: {why}")))?;
    let mut blocks = Vec::with_capacity(body.block_ids.len());
    let mut offset = 0;
    for block_id in &body.block_ids {
        let known = tx.row(
            "SELECT length FROM blocks WHERE file_id = ?1 AND block_id = ?2",
            params![file_id, block_id],
        )?;
        let Some(known) = known else {
            return Err(bad(format!(
                "block `{block_id}` of file {file_id} was never uploaded"
            )));
        };
        let len = known.get::<i64>(0)?.max(0) as usize;
        blocks.push(Placed {
            id: decode_block_id(block_id)?,
            offset,
            len,
        });
        offset += len as u64;
    }
    Ok(CommitPlan {
        file,
        blocks,
        data,
        already: false,
    })
}

/// What verification found.
pub struct Verified {
    sha256: String,
}

/// Phase two (no database): commits the block list in the file store (Azure:
/// Put Block List, with the `EncryptionData` as the blob's metadata), then
/// reads back and decrypts every block in commit order and checks the
/// content for its kind. The stored blocks become the committed file:
/// nothing is copied.
pub fn verify(store: &Store, plan: &CommitPlan, content_length: u64) -> ApiResult<Verified> {
    let unwrapper =
        KeyUnwrapper::from_jwk_json(plan.file.private_jwk.as_bytes()).map_err(internal)?;
    let decryptor = Decryptor::new(&plan.data, &unwrapper, content_length)
        .map_err(|error| bad(error.to_string()))?;
    decryptor
        .check_count(plan.blocks.len() as u64)
        .map_err(|error| bad(error.to_string()))?;
    let small = plan.file.kind != "media";
    if small && content_length > MAX_SMALL_FILE {
        return Err(bad(format!(
            "a {} file may be at most {MAX_SMALL_FILE} bytes",
            plan.file.kind
        )));
    }
    let ids: Vec<BlockId> = plan.blocks.iter().map(|block| block.id.clone()).collect();
    let data_json = serde_json::to_string(&plan.data).map_err(internal)?;
    let blobs = store.blobs();
    blobs
        .commit(&plan.file.file_id, &ids, &data_json)
        .map_err(|error| match error {
            BlobError::UnknownBlock(why) => bad(why),
            other => internal(other),
        })?;
    let mut hasher = Sha256::new();
    let mut plaintext = Vec::new();
    for (index, placed) in plan.blocks.iter().enumerate() {
        let mut block = blobs
            .read_block(&plan.file.file_id, placed)
            .map_err(internal)?;
        let plain = decryptor
            .open(index as u64, &mut block)
            .map_err(|error| bad(error.to_string()))?;
        hasher.update(plain);
        if small {
            plaintext.extend_from_slice(plain);
        }
    }
    if small {
        check_content(&plan.file.kind, &plaintext)?;
    }
    Ok(Verified {
        sha256: hex(&hasher.finalize()),
    })
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The registry refuses a discovery file that is not the discovery JSON and a
/// thumbnail that is not a JPEG.
fn check_content(kind: &str, plaintext: &[u8]) -> ApiResult<()> {
    match kind {
        "thumbnail"
            if !(plaintext.starts_with(&[0xff, 0xd8, 0xff])
                && plaintext.ends_with(&[0xff, 0xd9])) =>
        {
            Err(bad(
                "the thumbnail is not a JPEG (it must start FF D8 FF and end FF D9)",
            ))
        }
        "discovery" => {
            let json: serde_json::Value = serde_json::from_slice(plaintext)
                .map_err(|error| bad(format!("the discovery file is not JSON: {error}")))?;
            let devices = json
                .get("devices")
                .and_then(|devices| devices.as_array())
                .ok_or_else(|| bad("the discovery file has no `devices` array"))?;
            if let Some(index) = devices
                .iter()
                .position(|device| !device.get("deviceId").is_some_and(|id| id.is_string()))
            {
                return Err(bad(format!(
                    "discovery device {index} has no string deviceId"
                )));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// After a refused commit: counts it as late (the file's lock had ended) or
/// as refused (what it held was wrong).
pub fn note_refused_commit(tx: &Tx<'_>, file_id: &str, code: Code) -> ApiResult<()> {
    let committed = store::file(tx, file_id)?.is_some_and(|file| file.committed);
    let counter = if code == Code::Conflict && !committed {
        store::Counter::LateCommits
    } else {
        store::Counter::RefusedCommits
    };
    store::bump(tx, counter)
}

/// Phase three: records the commit if the lock still holds.
pub fn record_commit(
    tx: &Tx<'_>,
    plan: &CommitPlan,
    body: &CompleteFileBody,
    verified: &Verified,
) -> ApiResult<()> {
    let file = store::file(tx, &plan.file.file_id)?.ok_or_else(|| internal("the file vanished"))?;
    if file.committed || !lock_holds(tx, &file)? {
        return Err(conflict(format!(
            "the lock file {} was initialized under is gone",
            file.file_id
        )));
    }
    tx.execute(
        "UPDATE files SET committed = 1, commit_token = ?2, block_ids = ?3, encryption_data = ?4, content_length = ?5, sha256 = ?6
         WHERE file_id = ?1",
        params![
            file.file_id,
            body.lock_token,
            serde_json::to_string(&body.block_ids).map_err(internal)?,
            serde_json::to_string(&plan.data).map_err(internal)?,
            body.content_length as i64,
            verified.sha256
        ],
    )?;
    tx.execute(
        "DELETE FROM blocks WHERE file_id = ?1",
        params![file.file_id],
    )?;
    Ok(())
}

/// After a commit: removes the file's blocks that the commit did not name
/// (Azure discards uncommitted blocks).
pub fn prune_blocks(store: &Store, file_id: &str, block_ids: &[String]) {
    let keep: Vec<BlockId> = block_ids
        .iter()
        .filter_map(|id| BlockId::parse(id).ok())
        .collect();
    store.blobs().prune(file_id, &keep);
}

/// After a commit that was not recorded because its lock had ended: deletes
/// what the file store holds for the file now, as the sweep may have passed
/// it before the block list was committed. A file committed meanwhile, or
/// whose lock still holds (a transient failure the agent will retry), stays.
pub fn discard_unrecorded(store: &Store, file_id: &str) -> ApiResult<()> {
    let id = file_id.to_string();
    let dead = store.transaction_blocking(|tx| {
        Ok(match store::file(tx, &id)? {
            Some(file) => !file.committed && !lock_holds(tx, &file)?,
            None => false,
        })
    })?;
    if dead {
        store.blobs().delete(file_id).map_err(internal)?;
    }
    Ok(())
}

/// Deletes the blocks of abandoned files (of locks released, cancelled or
/// expired, or discarded at complete). Safe to run at any time.
pub fn sweep_abandoned(store: &Store) -> ApiResult<()> {
    let abandoned: Vec<String> = store.transaction_blocking(|tx| {
        tx.rows("SELECT file_id FROM files WHERE abandoned = 1", params![])?
            .iter()
            .map(|row| row.get(0))
            .collect::<Result<Vec<String>, _>>()
    })?;
    for file_id in abandoned {
        let deleted = store.blobs().delete(&file_id);
        if let Err(error) = &deleted {
            tracing::warn!("cannot delete the blocks of abandoned file {file_id}: {error}");
        }
        if deleted.is_ok() {
            // 2: abandoned and swept, so the next sweep skips it.
            store.transaction_blocking(|tx| {
                tx.execute(
                    "UPDATE files SET abandoned = 2 WHERE file_id = ?1",
                    params![file_id],
                )?;
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// At `complete`: files of this lock that received blocks must be committed;
/// files that never received one are discarded (their Initialize answer may
/// have been lost).
pub fn check_all_committed(tx: &Tx<'_>, job_id: &str, token: &str) -> ApiResult<()> {
    for file in store::files_of(tx, job_id)? {
        if file.lock_token != token || file.committed || file.abandoned {
            continue;
        }
        if file.block_id_len.is_some() {
            return Err(bad(format!(
                "file {} ({}) received blocks but was never committed",
                file.file_id, file.file_name
            )));
        }
        tx.execute(
            "UPDATE files SET abandoned = 1 WHERE file_id = ?1",
            params![file.file_id],
        )?;
    }
    Ok(())
}

/// Abandons every file of the lock `token` (release, cancel): a lock that ends
/// without completing the job leaves nothing behind, committed or not.
pub fn abandon_lock(tx: &Tx<'_>, job_id: &str, token: &str) -> ApiResult<()> {
    tx.execute(
        "UPDATE files SET abandoned = 1 WHERE job_id = ?1 AND lock_token = ?2 AND abandoned = 0",
        params![job_id, token],
    )?;
    Ok(())
}

/// Abandons the files of earlier locks (they expired without completing).
pub fn abandon_stale(tx: &Tx<'_>, job_id: &str, current: &str) -> ApiResult<()> {
    tx.execute(
        "UPDATE files SET abandoned = 1 WHERE job_id = ?1 AND lock_token != ?2 AND abandoned = 0",
        params![job_id, current],
    )?;
    Ok(())
}

/// The stored metadata and key of a committed file, for decryption.
pub fn committed(tx: &Tx<'_>, file_id: &str) -> ApiResult<FileRow> {
    let file = store::file(tx, file_id)?.ok_or_else(|| not_found(format!("no file {file_id}")))?;
    if !file.committed || file.abandoned {
        return Err(not_found(format!(
            "file {file_id} is not a committed file of its job"
        )));
    }
    Ok(file)
}

/// The stored ciphertext of a committed file: its blocks in commit order.
pub fn ciphertext(store: &Store, file: &FileRow) -> ApiResult<Vec<u8>> {
    let ids: Vec<String> =
        serde_json::from_str(file.block_ids.as_deref().unwrap_or("[]")).map_err(internal)?;
    store
        .blobs()
        .read_file(&file.file_id, &decode_block_ids(&ids)?)
        .map_err(internal)
}

/// Decrypts a committed file from its stored ciphertext.
pub fn decrypt(store: &Store, file: &FileRow) -> ApiResult<Vec<u8>> {
    let data: EncryptionData =
        serde_json::from_str(file.encryption_data.as_deref().unwrap_or_default())
            .map_err(internal)?;
    let unwrapper = KeyUnwrapper::from_jwk_json(file.private_jwk.as_bytes()).map_err(internal)?;
    let length = file.content_length.unwrap_or(0) as u64;
    let decryptor = Decryptor::new(&data, &unwrapper, length).map_err(internal)?;
    let ciphertext = ciphertext(store, file)?;
    let mut blocks = Vec::new();
    let mut rest = ciphertext.as_slice();
    for index in 0..decryptor.block_count() {
        let len = decryptor.block_len(index).min(rest.len());
        blocks.push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    decryptor.decrypt_all(blocks).map_err(internal)
}
