//! Durable state: a state store (tokens and used `jti`s, jobs, locks, files,
//! counters) and, beside it, the file store holding the files' bytes
//! ([`crate::blobs`]: the data folder's blocks, or an Azure container). The state store is
//! SQLite in the data folder (the embedded default, [`sqlite`]) or PostgreSQL
//! shared by several registry nodes ([`pg`]); the registry's logic sees only
//! [`Tx`], one transaction of either. Every operation runs in one transaction
//! on the blocking pool, so concurrent requests, other nodes and the command
//! line see a consistent state; a restart (even after `kill -9`) forgets
//! nothing that was answered.

pub mod pg;
mod schema;
pub mod sql;
pub mod sqlite;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use self::sql::{FromValue, Row, StateStore, ToValue, Tx, Value};
use crate::blobs::FileStore;
use crate::blobs::folder::FolderBlobs;
use crate::params;
use crate::wire::{ApiError, FileJson, JobJson};

/// The state store, the data folder and the file store.
#[derive(Clone)]
pub struct Store {
    state: Arc<dyn StateStore>,
    shared: Option<Arc<pg::PgState>>,
    dir: PathBuf,
    blobs: Arc<dyn FileStore>,
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

    /// Opens (creating if needed) the data folder `dir`, state in its SQLite
    /// database.
    pub fn open(dir: &Path) -> Result<Store, String> {
        let blobs = Store::make_dirs(dir)?;
        let state = sqlite::SqliteState::open(&Store::database_path(dir))?;
        Ok(Store {
            state: Arc::new(state),
            shared: None,
            dir: dir.to_path_buf(),
            blobs,
        })
    }

    /// Opens the data folder `dir` for its blocks, with the state in the
    /// PostgreSQL database at `url` (migrated to this version's schema).
    pub fn open_postgres(dir: &Path, url: &str) -> Result<Store, String> {
        let blobs = Store::make_dirs(dir)?;
        let state = Arc::new(pg::PgState::open(url)?);
        Ok(Store {
            state: state.clone(),
            shared: Some(state),
            dir: dir.to_path_buf(),
            blobs,
        })
    }

    /// The same store with the files' bytes in `blobs` instead of the data
    /// folder's `blocks/` (e.g. an Azure container, [`crate::blobs::azure`]).
    pub fn with_blobs(mut self, blobs: Arc<dyn FileStore>) -> Store {
        self.blobs = blobs;
        self
    }

    /// The data folder and its blocks folder.
    fn make_dirs(dir: &Path) -> Result<Arc<dyn FileStore>, String> {
        std::fs::create_dir_all(dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        Ok(Arc::new(FolderBlobs::open(&dir.join("blocks"))?))
    }

    /// The data folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state store's engine: `SQLite` or `PostgreSQL`.
    pub fn engine(&self) -> &'static str {
        self.state.engine()
    }

    /// The PostgreSQL state store, when the state is shared by several nodes.
    pub fn shared(&self) -> Option<&pg::PgState> {
        self.shared.as_deref()
    }

    /// Where the files' bytes live.
    pub fn blobs(&self) -> &dyn FileStore {
        self.blobs.as_ref()
    }

    /// Runs `operation` in one transaction, on the blocking pool. PostgreSQL
    /// may run it more than once (after a conflict with another node), so
    /// it must do nothing but through `tx`.
    pub async fn transaction<T, F>(&self, operation: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnMut(&Tx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || run(state.as_ref(), operation))
            .await
            .map_err(sql::storage)?
    }

    /// Like [`Store::transaction`], for the command line and blocking
    /// threads. PostgreSQL's transactions run on a thread of their own, as
    /// the caller may be inside an async runtime.
    pub fn transaction_blocking<T: Send>(
        &self,
        operation: impl FnMut(&Tx<'_>) -> Result<T, ApiError> + Send,
    ) -> Result<T, ApiError> {
        if self.shared.is_none() {
            return run(self.state.as_ref(), operation);
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| run(self.state.as_ref(), operation))
                .join()
                .unwrap_or_else(|_| Err(sql::storage("a transaction panicked")))
        })
    }
}

/// Runs `operation` in one transaction of `state`, returning its value.
fn run<T>(
    state: &dyn StateStore,
    mut operation: impl FnMut(&Tx<'_>) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let mut value = None;
    state.run(&mut |tx| {
        value = Some(operation(tx)?);
        Ok(())
    })?;
    value.ok_or_else(|| sql::storage("a transaction ended without its value"))
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
pub fn bump(tx: &Tx<'_>, counter: Counter) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO counters (name, value) VALUES (?1, 1)
         ON CONFLICT (name) DO UPDATE SET value = counters.value + 1",
        params![counter.name()],
    )?;
    Ok(())
}

/// The value of `counter`.
pub fn count(tx: &Tx<'_>, counter: Counter) -> Result<u64, ApiError> {
    let value: Option<i64> = tx
        .row(
            "SELECT value FROM counters WHERE name = ?1",
            params![counter.name()],
        )?
        .map(|row| row.get(0))
        .transpose()?;
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

    fn from_row(row: &Row) -> Result<JobRow, ApiError> {
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
pub fn job(tx: &Tx<'_>, job_id: &str) -> Result<Option<JobRow>, ApiError> {
    let sql = format!("SELECT {} FROM jobs WHERE job_id = ?1", JobRow::COLUMNS);
    tx.row(&sql, params![job_id])?
        .as_ref()
        .map(JobRow::from_row)
        .transpose()
}

/// Reads jobs matching a WHERE clause (with `?1`.. parameters), oldest first.
pub fn jobs_where(
    tx: &Tx<'_>,
    clause: &str,
    values: &[&dyn ToValue],
) -> Result<Vec<JobRow>, ApiError> {
    select_jobs(tx, clause, values, "")
}

/// The newest jobs (newest first) matching `clause`, at most `limit`.
pub fn newest_jobs_where(
    tx: &Tx<'_>,
    clause: &str,
    values: &[&dyn ToValue],
    limit: usize,
) -> Result<Vec<JobRow>, ApiError> {
    select_jobs(tx, clause, values, &format!(" DESC LIMIT {limit}"))
}

/// How many jobs each agent has in each stored state: (agent, state, count).
pub fn job_counts(tx: &Tx<'_>) -> Result<Vec<(String, String, i64)>, ApiError> {
    tx.rows(
        "SELECT agent_id, state, COUNT(*) FROM jobs GROUP BY agent_id, state ORDER BY agent_id",
        params![],
    )?
    .iter()
    .map(|row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
    .collect()
}

/// The first jobs (oldest first) matching `clause`, as many as the
/// parameter `limit` (e.g. `"?3"`) of `values` says.
pub fn first_jobs_where(
    tx: &Tx<'_>,
    clause: &str,
    values: &[&dyn ToValue],
    limit: &str,
) -> Result<Vec<JobRow>, ApiError> {
    select_jobs(tx, clause, values, &format!(" LIMIT {limit}"))
}

fn select_jobs(
    tx: &Tx<'_>,
    clause: &str,
    values: &[&dyn ToValue],
    limit: &str,
) -> Result<Vec<JobRow>, ApiError> {
    let sql = format!(
        "SELECT {} FROM jobs WHERE {clause} ORDER BY seq{limit}",
        JobRow::COLUMNS
    );
    tx.rows(&sql, values)?
        .iter()
        .map(JobRow::from_row)
        .collect()
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

    fn from_row(row: &Row) -> Result<FileRow, ApiError> {
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
pub fn file(tx: &Tx<'_>, file_id: &str) -> Result<Option<FileRow>, ApiError> {
    let sql = format!("SELECT {} FROM files WHERE file_id = ?1", FileRow::COLUMNS);
    tx.row(&sql, params![file_id])?
        .as_ref()
        .map(FileRow::from_row)
        .transpose()
}

/// Reads the live files of a job (not those of a lock that ended without
/// completing the job), oldest first.
pub fn files_of(tx: &Tx<'_>, job_id: &str) -> Result<Vec<FileRow>, ApiError> {
    let sql = format!(
        "SELECT {} FROM files WHERE job_id = ?1 AND abandoned = 0 ORDER BY created_ms, file_id",
        FileRow::COLUMNS
    );
    tx.rows(&sql, params![job_id])?
        .iter()
        .map(FileRow::from_row)
        .collect()
}

/// Reads committed files of a kind, newest first.
pub fn committed_files(tx: &Tx<'_>, kind: &str) -> Result<Vec<FileRow>, ApiError> {
    let sql = format!(
        "SELECT {} FROM files WHERE kind = ?1 AND committed = 1 AND abandoned = 0 ORDER BY created_ms DESC",
        FileRow::COLUMNS
    );
    tx.rows(&sql, params![kind])?
        .iter()
        .map(FileRow::from_row)
        .collect()
}

/// What happened to a job, as its history shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEvent {
    /// Posted by the operator.
    Posted,
    /// Locked by an agent.
    Locked,
    /// A lock that ran out without being renewed (recorded when the job is
    /// locked again, at the time the lock ended).
    Expired,
    /// The lock was renewed.
    Renewed,
    /// Released by its agent: available again.
    Released,
    /// Cancelled (by its agent, or by the operator when no agent is named).
    Cancelled,
    /// Completed in a final state (the detail names it).
    Completed,
}

impl JobEvent {
    /// The word stored and shown.
    pub fn name(self) -> &'static str {
        match self {
            JobEvent::Posted => "posted",
            JobEvent::Locked => "locked",
            JobEvent::Expired => "expired",
            JobEvent::Renewed => "renewed",
            JobEvent::Released => "released",
            JobEvent::Cancelled => "cancelled",
            JobEvent::Completed => "completed",
        }
    }
}

/// One entry of a job's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    /// The event's word ([`JobEvent::name`]).
    pub event: String,
    /// The agent that did it (none for the operator).
    pub agent_id: Option<String>,
    /// When, in milliseconds since the epoch.
    pub at_ms: i64,
    /// The final state, a reason or a message, when the event has one.
    pub detail: Option<String>,
}

/// Appends `event` to the history of `job_id`.
pub fn record_event(
    tx: &Tx<'_>,
    job_id: &str,
    event: JobEvent,
    agent_id: Option<&str>,
    at_ms: i64,
    detail: Option<&str>,
) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO job_events (job_id, event, agent_id, at_ms, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![job_id, event.name(), agent_id, at_ms, detail],
    )?;
    Ok(())
}

/// The history of `job_id`, oldest first.
pub fn history(tx: &Tx<'_>, job_id: &str) -> Result<Vec<HistoryRow>, ApiError> {
    tx.rows(
        "SELECT event, agent_id, at_ms, detail FROM job_events WHERE job_id = ?1 ORDER BY seq",
        params![job_id],
    )?
    .iter()
    .map(|row| {
        Ok(HistoryRow {
            event: row.get(0)?,
            agent_id: row.get(1)?,
            at_ms: row.get(2)?,
            detail: row.get(3)?,
        })
    })
    .collect()
}

/// How stale a stored last poll may get before a poll writes it again: the
/// agent bench polls thousands of times a second, and a poll that changes
/// nothing writes nothing.
pub const POLL_RECORD_INTERVAL_MS: i64 = 1000;

/// Records that `agent_id` polled at `now` (a write only when the stored
/// time is older than [`POLL_RECORD_INTERVAL_MS`]).
pub fn record_poll(tx: &Tx<'_>, agent_id: &str, now: i64) -> Result<(), ApiError> {
    tx.execute(
        "INSERT INTO agent_polls (agent_id, last_poll_ms) VALUES (?1, ?2)
         ON CONFLICT (agent_id) DO UPDATE SET last_poll_ms = excluded.last_poll_ms
         WHERE agent_polls.last_poll_ms < excluded.last_poll_ms - ?3",
        params![agent_id, now, POLL_RECORD_INTERVAL_MS],
    )?;
    Ok(())
}

/// Every agent's last recorded poll, by agent id.
pub fn last_polls(tx: &Tx<'_>) -> Result<Vec<(String, i64)>, ApiError> {
    tx.rows(
        "SELECT agent_id, last_poll_ms FROM agent_polls ORDER BY agent_id",
        params![],
    )?
    .iter()
    .map(|row| Ok((row.get(0)?, row.get(1)?)))
    .collect()
}
