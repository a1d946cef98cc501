//! Durable state: one SQLite database (WAL) in the data folder, plus a folder
//! of blocks and a folder of committed files. Every operation runs in one
//! immediate transaction on the blocking pool, so concurrent requests, and the
//! command line working on the same folder, see a consistent state; a restart
//! (even after `kill -9`) forgets nothing that was answered.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::wire::{ApiError, Code, FileJson, JobJson};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS principals (
    client_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    public_jwk TEXT,
    secret_sha256 TEXT,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS used_jtis (
    jti TEXT PRIMARY KEY,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_sha256 TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL UNIQUE,
    job_type TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    device_id TEXT,
    start_utc TEXT,
    end_utc TEXT,
    parameters TEXT NOT NULL,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    lock_token TEXT,
    lock_request_id TEXT,
    lock_expires_ms INTEGER,
    task_progress INTEGER NOT NULL DEFAULT 0,
    task_total INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    final_token TEXT,
    released_token TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_agent ON jobs (agent_id, state, seq);
CREATE TABLE IF NOT EXISTS files (
    file_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    lock_token TEXT NOT NULL,
    kind TEXT NOT NULL,
    file_name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    device_id TEXT,
    private_jwk TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    block_id_len INTEGER,
    committed INTEGER NOT NULL DEFAULT 0,
    abandoned INTEGER NOT NULL DEFAULT 0,
    commit_token TEXT,
    block_ids TEXT,
    encryption_data TEXT,
    content_length INTEGER,
    sha256 TEXT
);
CREATE INDEX IF NOT EXISTS files_by_job ON files (job_id);
-- The sweep after each job call reads only the files waiting to be swept.
CREATE INDEX IF NOT EXISTS files_to_sweep ON files (file_id) WHERE abandoned = 1;
CREATE TABLE IF NOT EXISTS blocks (
    file_id TEXT NOT NULL,
    block_id TEXT NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (file_id, block_id)
);
-- What the registry counts across restarts (see `Counter`).
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"#;

/// The database and the folders beside it.
#[derive(Clone)]
pub struct Store {
    connection: Arc<Mutex<Connection>>,
    dir: PathBuf,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 of `ms`.
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Parses RFC 3339.
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::Internal, format!("storage failed: {error}"))
}

impl From<rusqlite::Error> for ApiError {
    fn from(error: rusqlite::Error) -> Self {
        internal(error)
    }
}

impl Store {
    /// The database file of the data folder `dir`.
    pub fn database_path(dir: &Path) -> PathBuf {
        dir.join("registry.sqlite3")
    }

    /// Whether `dir` holds a registry (its database exists), so that a
    /// command meant to read one can refuse a mistyped folder instead of
    /// creating an empty registry there.
    pub fn exists(dir: &Path) -> bool {
        Store::database_path(dir).is_file()
    }

    /// Opens (creating if needed) the data folder `dir`.
    pub fn open(dir: &Path) -> Result<Store, String> {
        for sub in ["", "blocks"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|error| format!("cannot create {}: {error}", dir.join(sub).display()))?;
        }
        let path = Store::database_path(dir);
        let connection = Connection::open(&path)
            .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .and_then(|()| connection.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|()| connection.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|()| connection.execute_batch(SCHEMA))
            .map_err(|error| format!("cannot set up {}: {error}", path.display()))?;
        Ok(Store {
            connection: Arc::new(Mutex::new(connection)),
            dir: dir.to_path_buf(),
        })
    }

    /// The data folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blocks of `file_id` live.
    pub fn blocks_dir(&self, file_id: &str) -> PathBuf {
        self.dir.join("blocks").join(file_id)
    }

    /// Runs `operation` in one immediate transaction, on the blocking pool.
    pub async fn transaction<T, F>(&self, operation: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = connection.lock().unwrap_or_else(PoisonError::into_inner);
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = operation(&transaction)?;
            transaction.commit()?;
            Ok(value)
        })
        .await
        .map_err(internal)?
    }

    /// Like [`Store::transaction`], for the command line (no async runtime).
    pub fn transaction_blocking<T>(
        &self,
        operation: impl FnOnce(&Transaction<'_>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = operation(&transaction)?;
        transaction.commit()?;
        Ok(value)
    }
}

/// What the registry counts, kept in the database so a restart (even
/// `kill -9`) loses no count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// A complete of a job already final, other than an idempotent repeat.
    DoubleCompletes,
    /// A commit refused for what it held (400, or a second commit of a file
    /// with another block list).
    RefusedCommits,
    /// A commit refused because the lock its file was initialized under had
    /// ended (409).
    LateCommits,
    /// A lock granted on a job whose previous lock had expired.
    ExpiredLocks,
}

impl Counter {
    fn name(self) -> &'static str {
        match self {
            Counter::DoubleCompletes => "double_completes",
            Counter::RefusedCommits => "refused_commits",
            Counter::LateCommits => "late_commits",
            Counter::ExpiredLocks => "expired_locks",
        }
    }
}

/// Adds one to `counter`.
pub fn bump(tx: &Transaction<'_>, counter: Counter) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO counters (name, value) VALUES (?1, 1)
         ON CONFLICT (name) DO UPDATE SET value = value + 1",
        [counter.name()],
    )?;
    Ok(())
}

/// The value of `counter`.
pub fn count(tx: &Transaction<'_>, counter: Counter) -> Result<u64, ApiError> {
    let value: Option<i64> = tx
        .query_row(
            "SELECT value FROM counters WHERE name = ?1",
            [counter.name()],
            |row| row.get(0),
        )
        .ok();
    Ok(value.unwrap_or(0).max(0) as u64)
}

/// One row of `jobs`.
#[derive(Debug, Clone)]
pub struct JobRow {
    pub job_id: String,
    pub job_type: String,
    pub agent_id: String,
    pub device_id: Option<String>,
    pub start_utc: Option<String>,
    pub end_utc: Option<String>,
    pub parameters: String,
    pub state: String,
    pub created_ms: i64,
    pub lock_token: Option<String>,
    pub lock_request_id: Option<String>,
    pub lock_expires_ms: Option<i64>,
    pub task_progress: i64,
    pub task_total: i64,
    pub message: Option<String>,
    pub final_token: Option<String>,
    pub released_token: Option<String>,
}

/// The job states that never change again.
pub const FINAL_STATES: [&str; 4] = ["Completed", "PartiallyCompleted", "Failed", "Cancelled"];

impl JobRow {
    const COLUMNS: &'static str = "job_id, job_type, agent_id, device_id, start_utc, end_utc, parameters, state, \
        created_ms, lock_token, lock_request_id, lock_expires_ms, task_progress, task_total, message, final_token, released_token";

    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
        Ok(JobRow {
            job_id: row.get(0)?,
            job_type: row.get(1)?,
            agent_id: row.get(2)?,
            device_id: row.get(3)?,
            start_utc: row.get(4)?,
            end_utc: row.get(5)?,
            parameters: row.get(6)?,
            state: row.get(7)?,
            created_ms: row.get(8)?,
            lock_token: row.get(9)?,
            lock_request_id: row.get(10)?,
            lock_expires_ms: row.get(11)?,
            task_progress: row.get(12)?,
            task_total: row.get(13)?,
            message: row.get(14)?,
            final_token: row.get(15)?,
            released_token: row.get(16)?,
        })
    }

    /// Whether a lock is held at `now` (stored as Locked and not expired).
    pub fn is_locked(&self, now: i64) -> bool {
        self.state == "Locked" && self.lock_expires_ms.is_some_and(|expires| expires > now)
    }

    /// Whether the lock is held by `token` at `now`.
    pub fn is_locked_by(&self, token: &str, now: i64) -> bool {
        self.is_locked(now) && self.lock_token.as_deref() == Some(token)
    }

    /// Whether the job is final.
    pub fn is_final(&self) -> bool {
        FINAL_STATES.contains(&self.state.as_str())
    }

    /// The state as seen at `now`: an expired lock is Available again, with
    /// progress reset.
    pub fn to_json(&self, now: i64) -> JobJson {
        let expired = self.state == "Locked" && !self.is_locked(now);
        let state = if expired {
            "Available"
        } else {
            self.state.as_str()
        };
        let locked = state == "Locked";
        JobJson {
            job_id: self.job_id.clone(),
            job_type: self.job_type.clone(),
            agent_id: self.agent_id.clone(),
            device_id: self.device_id.clone(),
            start_time_utc: self.start_utc.clone(),
            end_time_utc: self.end_utc.clone(),
            parameters: serde_json::from_str(&self.parameters).unwrap_or_default(),
            state: state.to_string(),
            created_utc: rfc3339(self.created_ms),
            lock_expiration_utc: if locked {
                self.lock_expires_ms.map(rfc3339)
            } else {
                None
            },
            task_progress: if expired {
                0
            } else {
                self.task_progress as u64
            },
            task_total: if expired { 0 } else { self.task_total as u64 },
            message: self.message.clone(),
            files: None,
        }
    }
}

/// Reads one job.
pub fn job(tx: &Transaction<'_>, job_id: &str) -> Result<Option<JobRow>, ApiError> {
    let sql = format!("SELECT {} FROM jobs WHERE job_id = ?1", JobRow::COLUMNS);
    Ok(tx
        .query_row(&sql, params![job_id], JobRow::from_row)
        .optional()?)
}

/// Reads jobs matching a WHERE clause (with `?1`.. parameters), oldest first.
pub fn jobs_where(
    tx: &Transaction<'_>,
    clause: &str,
    values: &[&dyn rusqlite::ToSql],
) -> Result<Vec<JobRow>, ApiError> {
    let sql = format!(
        "SELECT {} FROM jobs WHERE {clause} ORDER BY seq",
        JobRow::COLUMNS
    );
    let mut statement = tx.prepare(&sql)?;
    let rows = statement.query_map(values, JobRow::from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// One row of `files`.
#[derive(Debug, Clone)]
pub struct FileRow {
    pub file_id: String,
    pub job_id: String,
    pub lock_token: String,
    pub kind: String,
    pub file_name: String,
    pub content_type: String,
    pub device_id: Option<String>,
    pub private_jwk: String,
    pub block_id_len: Option<i64>,
    pub committed: bool,
    pub abandoned: bool,
    pub commit_token: Option<String>,
    pub block_ids: Option<String>,
    pub encryption_data: Option<String>,
    pub content_length: Option<i64>,
    pub sha256: Option<String>,
    pub created_ms: i64,
}

impl FileRow {
    const COLUMNS: &'static str = "file_id, job_id, lock_token, kind, file_name, content_type, device_id, private_jwk, \
        block_id_len, committed, abandoned, commit_token, block_ids, encryption_data, content_length, sha256, created_ms";

    fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<FileRow> {
        Ok(FileRow {
            file_id: row.get(0)?,
            job_id: row.get(1)?,
            lock_token: row.get(2)?,
            kind: row.get(3)?,
            file_name: row.get(4)?,
            content_type: row.get(5)?,
            device_id: row.get(6)?,
            private_jwk: row.get(7)?,
            block_id_len: row.get(8)?,
            committed: row.get(9)?,
            abandoned: row.get(10)?,
            commit_token: row.get(11)?,
            block_ids: row.get(12)?,
            encryption_data: row.get(13)?,
            content_length: row.get(14)?,
            sha256: row.get(15)?,
            created_ms: row.get(16)?,
        })
    }

    /// The admin view.
    pub fn to_json(&self) -> FileJson {
        FileJson {
            file_id: self.file_id.clone(),
            kind: self.kind.clone(),
            file_name: self.file_name.clone(),
            content_type: self.content_type.clone(),
            committed: self.committed,
            length: self.content_length.map(|length| length as u64),
            sha256: self.sha256.clone(),
        }
    }
}

/// Reads one file.
pub fn file(tx: &Transaction<'_>, file_id: &str) -> Result<Option<FileRow>, ApiError> {
    let sql = format!("SELECT {} FROM files WHERE file_id = ?1", FileRow::COLUMNS);
    Ok(tx
        .query_row(&sql, params![file_id], FileRow::from_row)
        .optional()?)
}

/// Reads the live files of a job (not those of a lock that ended without
/// completing the job), oldest first.
pub fn files_of(tx: &Transaction<'_>, job_id: &str) -> Result<Vec<FileRow>, ApiError> {
    let sql = format!(
        "SELECT {} FROM files WHERE job_id = ?1 AND abandoned = 0 ORDER BY created_ms, file_id",
        FileRow::COLUMNS
    );
    let mut statement = tx.prepare(&sql)?;
    let rows = statement.query_map(params![job_id], FileRow::from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Reads committed files of a kind, newest first.
pub fn committed_files(tx: &Transaction<'_>, kind: &str) -> Result<Vec<FileRow>, ApiError> {
    let sql = format!(
        "SELECT {} FROM files WHERE kind = ?1 AND committed = 1 AND abandoned = 0 ORDER BY created_ms DESC",
        FileRow::COLUMNS
    );
    let mut statement = tx.prepare(&sql)?;
    let rows = statement.query_map(params![kind], FileRow::from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
