//! The shared state store: PostgreSQL, for several registry nodes on one
//! database. Every transaction runs SERIALIZABLE, so whatever one node does
//! in one transaction (a lock granted after reading the job, a `jti` recorded
//! once, a file committed while its lock holds) is exclusive across nodes
//! exactly as SQLite's one-writer transactions are on one machine; when
//! PostgreSQL reports a conflict between nodes (serialization failure or
//! deadlock), the whole transaction is run again.
//!
//! The driver is `postgres`, the blocking face of `tokio-postgres` (each
//! connection drives its own small runtime), pooled by `r2d2`: the registry's
//! logic runs its transactions on the blocking pool, as with SQLite. The
//! schema is applied by versioned migrations under an advisory lock, so nodes
//! started at once agree on one version.

use std::time::Duration;

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{IsolationLevel, NoTls};
use r2d2_postgres::{PostgresConnectionManager, r2d2};

use super::sql::{DbError, Row, StateStore, Statements, Tx, Value, dollar_parameters, storage};
use crate::wire::ApiError;

/// The schema, one entry per version; a database is brought up to the last.
/// Never change what an entry that shipped makes: add the next.
fn migrations() -> Vec<(i64, String)> {
    vec![
        (1, super::schema::postgres_v1()),
        (2, super::schema::postgres_v2()),
    ]
}

/// Any number taken by nothing else, for `pg_advisory_xact_lock`.
const MIGRATION_LOCK: i64 = 0x636f_7272_616c;
/// How often one transaction is repeated after conflicts before giving up.
const MAX_ATTEMPTS: u32 = 60;
/// Connections per node.
const POOL_SIZE: u32 = 16;

/// The PostgreSQL state store.
pub struct PgState {
    /// Always `Some` but while being dropped.
    pool: Option<Pool>,
}

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// How long PostgreSQL keeps a session idle inside a transaction (a node
/// that stopped between two statements) before it ends it and frees its
/// locks. Every transaction of the registry sends its statements back to
/// back, so no healthy node comes near it.
const IDLE_IN_TRANSACTION_MS: u32 = 5_000;

impl Drop for PgState {
    /// Closing a connection blocks on its runtime, which cannot happen on a
    /// thread driving async tasks (a registry dropped from async code): the
    /// pool is closed on a thread of its own.
    fn drop(&mut self) {
        let pool = self.pool.take();
        let _ = std::thread::Builder::new()
            .name("corral-pg-close".into())
            .spawn(move || drop(pool));
    }
}

/// `url` without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl PgState {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`),
    /// brings its schema up to date, and keeps a pool of connections.
    pub fn open(url: &str) -> Result<PgState, String> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|error| format!("`{}` is not a PostgreSQL URL: {error}", redact(url)))?;
        // A node that hangs mid-transaction (stopped, swapped out) must not
        // hold its row locks over every other node: the server ends a session
        // left idle inside a transaction after a few seconds.
        let options = format!(
            "{} -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}",
            config.get_options().unwrap_or_default()
        );
        config.options(options.trim_start());
        // A connection drives its own runtime, which cannot start on a
        // thread already inside one (the registry is opened from async code).
        let migrated = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let mut client = config.connect(NoTls).map_err(|error| {
                        format!("cannot connect to PostgreSQL at {}: {error}", redact(url))
                    })?;
                    migrate(&mut client)
                        .map_err(|error| format!("cannot migrate {}: {error}", redact(url)))
                })
                .join()
                .unwrap_or_else(|_| Err("connecting to PostgreSQL panicked".into()))
        });
        migrated?;
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(0))
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(10))
            .build_unchecked(manager);
        Ok(PgState { pool: Some(pool) })
    }

    /// Reads a setting every node shares, setting it to `initial` first if
    /// no node has yet.
    pub fn shared_setting(&self, name: &str, initial: &str) -> Result<String, ApiError> {
        // On a thread of its own: the caller may be inside a runtime.
        std::thread::scope(|scope| {
            scope
                .spawn(|| self.setting(name, initial))
                .join()
                .unwrap_or_else(|_| Err(storage("reading a shared setting panicked")))
        })
    }

    fn setting(&self, name: &str, initial: &str) -> Result<String, ApiError> {
        let mut value = String::new();
        self.run(&mut |tx| {
            tx.execute(
                "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                crate::params![name, initial],
            )?;
            let row = tx.row(
                "SELECT value FROM settings WHERE name = ?1",
                crate::params![name],
            )?;
            value = row.map(|row| row.get(0)).transpose()?.unwrap_or_default();
            Ok(())
        })?;
        Ok(value)
    }
}

fn migrate(client: &mut postgres::Client) -> Result<(), postgres::Error> {
    let mut transaction = client.transaction()?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    transaction.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)",
    )?;
    let applied: i64 = transaction
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )?
        .get(0);
    for (version, sql) in migrations() {
        if version > applied {
            transaction.batch_execute(&sql)?;
            transaction.execute(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
                &[&version, &super::now_ms()],
            )?;
        }
    }
    transaction.commit()
}

/// How one attempt at a transaction ended.
enum Attempt {
    Done(Result<(), ApiError>),
    Again(ApiError),
}

fn db_error(error: postgres::Error) -> DbError {
    let conflict = matches!(
        error.code(),
        Some(&SqlState::T_R_SERIALIZATION_FAILURE) | Some(&SqlState::T_R_DEADLOCK_DETECTED)
    );
    DbError {
        message: error
            .as_db_error()
            .map_or_else(|| error.to_string(), ToString::to_string),
        retry: conflict || error.is_closed(),
    }
}

impl PgState {
    fn attempt(&self, operation: &mut dyn FnMut(&Tx<'_>) -> Result<(), ApiError>) -> Attempt {
        let Some(pool) = &self.pool else {
            return Attempt::Done(Err(storage("the PostgreSQL pool is closed")));
        };
        let mut client = match pool.get() {
            Ok(client) => client,
            Err(error) => {
                return Attempt::Done(Err(storage(format!("no PostgreSQL connection: {error}"))));
            }
        };
        let transaction = client
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .start();
        let mut transaction = match transaction {
            Ok(transaction) => transaction,
            Err(error) => {
                let error = db_error(error);
                return if error.retry {
                    Attempt::Again(storage(error.message))
                } else {
                    Attempt::Done(Err(storage(error.message)))
                };
            }
        };
        let (result, retry, failed) = {
            let mut statements = PgStatements(&mut transaction);
            let tx = Tx::new(&mut statements);
            let result = operation(&tx);
            (result, tx.wants_retry(), tx.any_failed())
        };
        match result {
            Err(error) if retry => Attempt::Again(error),
            Err(error) => Attempt::Done(Err(error)),
            // A statement failed but the operation carried on: PostgreSQL
            // has aborted the transaction, so nothing of it may be answered.
            Ok(()) if retry => Attempt::Again(storage("a statement conflicted with another node")),
            Ok(()) if failed => {
                Attempt::Done(Err(storage("a statement of the transaction failed")))
            }
            Ok(()) => match transaction.commit() {
                Ok(()) => Attempt::Done(Ok(())),
                Err(error) => {
                    let error = db_error(error);
                    if error.retry {
                        Attempt::Again(storage(error.message))
                    } else {
                        Attempt::Done(Err(storage(error.message)))
                    }
                }
            },
        }
    }
}

impl StateStore for PgState {
    fn run(
        &self,
        operation: &mut dyn FnMut(&Tx<'_>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let mut last = None;
        for attempt in 0..MAX_ATTEMPTS {
            match self.attempt(operation) {
                Attempt::Done(result) => return result,
                Attempt::Again(error) => last = Some(error),
            }
            // Jittered back-off, so that the nodes that collided do not again.
            let cap = 1u64 << attempt.min(6);
            std::thread::sleep(Duration::from_micros(
                rand::random_range(0..cap * 1000) + 200,
            ));
        }
        Err(last.unwrap_or_else(|| storage("the transaction kept conflicting")))
    }

    fn engine(&self) -> &'static str {
        "PostgreSQL"
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(int) => match *ty {
                Type::INT8 => int.to_sql(ty, out),
                Type::INT4 => i32::try_from(*int)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*int)?.to_sql(ty, out),
                Type::BOOL => (*int != 0).to_sql(ty, out),
                _ => int.to_string().to_sql(ty, out),
            },
            Value::Text(text) => text.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

struct PgStatements<'a, 'b>(&'a mut postgres::Transaction<'b>);

fn bind(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|value| value as &(dyn ToSql + Sync))
        .collect()
}

fn column(row: &postgres::Row, index: usize) -> Result<Value, postgres::Error> {
    let int = |value: Option<i64>| value.map_or(Value::Null, Value::Int);
    Ok(match *row.columns()[index].type_() {
        Type::INT8 => int(row.try_get(index)?),
        Type::INT4 => int(row.try_get::<_, Option<i32>>(index)?.map(i64::from)),
        Type::INT2 => int(row.try_get::<_, Option<i16>>(index)?.map(i64::from)),
        Type::BOOL => int(row.try_get::<_, Option<bool>>(index)?.map(i64::from)),
        _ => row
            .try_get::<_, Option<String>>(index)?
            .map_or(Value::Null, Value::Text),
    })
}

impl Statements for PgStatements<'_, '_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        self.0
            .execute(dollar_parameters(sql).as_str(), &bind(params))
            .map_err(db_error)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let rows = self
            .0
            .query(dollar_parameters(sql).as_str(), &bind(params))
            .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|index| column(row, index))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Row)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(db_error)
    }
}
