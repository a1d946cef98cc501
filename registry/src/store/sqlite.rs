//! The embedded state store: one SQLite database (WAL) in the data folder.
//! Every transaction is immediate and the connection is shared behind a
//! mutex, so transactions run one at a time; the command line may work on
//! the same file at once (SQLite's own locking, with a busy timeout).

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use super::schema::{SCHEMA, SCHEMA_V2};
use super::sql::{DbError, Row, StateStore, Statements, Tx, Value, storage};
use crate::wire::ApiError;

/// Prepared statements kept per connection: more than the registry has.
const STATEMENT_CACHE: usize = 256;

/// The SQLite state store.
pub struct SqliteState {
    connection: Mutex<Connection>,
}

impl SqliteState {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteState, String> {
        let connection = Connection::open(path)
            .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .and_then(|()| connection.pragma_update(None, "journal_mode", "WAL"))
            .and_then(|()| connection.pragma_update(None, "synchronous", "NORMAL"))
            .and_then(|()| connection.execute_batch(SCHEMA))
            .and_then(|()| connection.execute_batch(SCHEMA_V2))
            .map_err(|error| format!("cannot set up {}: {error}", path.display()))?;
        // Every statement the registry runs stays prepared (rusqlite keeps 16).
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(SqliteState {
            connection: Mutex::new(connection),
        })
    }
}

impl StateStore for SqliteState {
    fn run(
        &self,
        operation: &mut dyn FnMut(&Tx<'_>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError> {
        let mut connection = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(storage)?;
        let mut statements = SqliteStatements(&transaction);
        operation(&Tx::new(&mut statements))?;
        transaction.commit().map_err(storage)
    }

    fn engine(&self) -> &'static str {
        "SQLite"
    }
}

struct SqliteStatements<'a>(&'a rusqlite::Transaction<'a>);

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Value::Int(int) => ToSqlOutput::Owned(rusqlite::types::Value::Integer(*int)),
            Value::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
        })
    }
}

fn failed(error: rusqlite::Error) -> DbError {
    DbError {
        message: error.to_string(),
        retry: false,
    }
}

impl Statements for SqliteStatements<'_> {
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError> {
        // Cached: the same few statements run thousands of times a second.
        let changed = self
            .0
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute(rusqlite::params_from_iter(params)))
            .map_err(failed)?;
        Ok(changed as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let mut statement = self.0.prepare_cached(sql).map_err(failed)?;
        let columns = statement.column_count();
        let mut rows = statement
            .query(rusqlite::params_from_iter(params))
            .map_err(failed)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(failed)? {
            let mut values = Vec::with_capacity(columns);
            for index in 0..columns {
                values.push(match row.get_ref(index).map_err(failed)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(int) => Value::Int(int),
                    ValueRef::Real(real) => Value::Int(real as i64),
                    ValueRef::Text(text) | ValueRef::Blob(text) => {
                        Value::Text(String::from_utf8_lossy(text).into_owned())
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }
}
