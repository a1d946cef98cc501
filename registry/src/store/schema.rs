//! The state store's tables, written once: SQLite runs them as they are at
//! every open (each statement is `IF NOT EXISTS`), PostgreSQL as migrations 1
//! and 2 with its own integer types ([`postgres_v1`], [`postgres_v2`]).

/// The tables and indexes, in SQLite's words.
pub const SCHEMA: &str = r#"
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

/// Version 2: what the console shows that the protocol's state does not
/// keep: each job's history (one row per lock, renewal, release, expiry and
/// ending, with the agent and the time) and each agent's last poll (written
/// at most once a second per agent, see `store::record_poll`).
pub const SCHEMA_V2: &str = r#"
CREATE TABLE IF NOT EXISTS job_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    event TEXT NOT NULL,
    agent_id TEXT,
    at_ms INTEGER NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events (job_id, seq);
CREATE TABLE IF NOT EXISTS agent_polls (
    agent_id TEXT PRIMARY KEY,
    last_poll_ms INTEGER NOT NULL
);
"#;

/// SQLite's words for `sql` turned into PostgreSQL's.
fn postgres_words(sql: &str) -> String {
    sql.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
        .replace("INTEGER", "BIGINT")
}

/// [`SCHEMA_V2`] in PostgreSQL's words.
pub fn postgres_v2() -> String {
    postgres_words(SCHEMA_V2)
}

/// [`SCHEMA`] in PostgreSQL's words (64-bit integers, a sequence for
/// `jobs.seq`), plus what every node must agree on (the admin token).
pub fn postgres_v1() -> String {
    let mut sql = postgres_words(SCHEMA);
    sql.push_str(
        "CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);\n",
    );
    sql
}

#[cfg(test)]
mod tests {
    #[test]
    fn postgres_gets_its_own_integers() {
        let sql = super::postgres_v1();
        assert!(sql.contains("seq BIGSERIAL PRIMARY KEY"));
        assert!(!sql.contains("INTEGER"));
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS settings"));
        let v2 = super::postgres_v2();
        assert!(v2.contains("seq BIGSERIAL PRIMARY KEY"));
        assert!(!v2.contains("INTEGER"));
    }
}
