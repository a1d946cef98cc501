//! What the registry's logic sees of a database: one transaction ([`Tx`])
//! that runs SQL written once for both engines, with `?1`-style parameters,
//! integers and text only. Each engine ([`super::sqlite`], [`super::pg`])
//! implements [`Statements`] for its own transaction and [`StateStore`] for
//! how transactions are begun, committed and retried.

use std::cell::{Cell, RefCell};

use crate::wire::{ApiError, Code};

/// One SQL value: all the registry stores is integers and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// NULL.
    Null,
    /// An integer (SQLite INTEGER, PostgreSQL BIGINT).
    Int(i64),
    /// Text.
    Text(String),
}

/// What can be passed as a parameter.
pub trait ToValue {
    /// The value.
    fn to_value(&self) -> Value;
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_string())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

/// Parameters for [`Tx::execute`] and friends: `params![a, b]`.
#[macro_export]
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$(&$value as &dyn $crate::store::ToValue),*] as &[&dyn $crate::store::ToValue]
    };
}

/// What a column can be read as.
pub trait FromValue: Sized {
    /// Converts, or says why not.
    fn from_value(value: &Value) -> Result<Self, String>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Int(int) => Ok(*int),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        i64::from_value(value).map(|int| int != 0)
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => Ok(text.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `index` as `T`.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, ApiError> {
        let value = self.0.get(index).unwrap_or(&Value::Null);
        T::from_value(value).map_err(|why| storage(format!("column {index}: {why}")))
    }
}

/// A failed statement, and whether repeating the whole transaction may
/// succeed (a serialization failure or deadlock between nodes).
#[derive(Debug)]
pub struct DbError {
    /// What the engine said.
    pub message: String,
    /// Whether the transaction should be run again.
    pub retry: bool,
}

/// The statements of one open transaction of an engine.
pub trait Statements {
    /// Runs a statement; returns how many rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, DbError>;
    /// Runs a query; returns its rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError>;
}

/// A state store engine: runs an operation in one transaction, all or nothing.
pub trait StateStore: Send + Sync {
    /// Runs `operation` in one transaction (blocking the thread), committing
    /// if it returns `Ok`. The operation may be run more than once when the
    /// engine asks for a repeat, so it must have no effect outside `tx`.
    fn run(
        &self,
        operation: &mut dyn FnMut(&Tx<'_>) -> Result<(), ApiError>,
    ) -> Result<(), ApiError>;
    /// The engine, for messages: `SQLite` or `PostgreSQL`.
    fn engine(&self) -> &'static str;
}

/// One transaction, as the registry's logic uses it.
pub struct Tx<'a> {
    statements: RefCell<&'a mut dyn Statements>,
    retry: Cell<bool>,
    failed: Cell<bool>,
}

impl<'a> Tx<'a> {
    /// Wraps an engine's open transaction.
    pub fn new(statements: &'a mut dyn Statements) -> Tx<'a> {
        Tx {
            statements: RefCell::new(statements),
            retry: Cell::new(false),
            failed: Cell::new(false),
        }
    }

    /// Whether any statement failed (PostgreSQL then aborts the whole
    /// transaction, even if the operation went on as if it had not).
    pub fn any_failed(&self) -> bool {
        self.failed.get()
    }

    /// Whether a statement failed in a way that repeating the transaction may cure.
    pub fn wants_retry(&self) -> bool {
        self.retry.get()
    }

    fn failed(&self, error: DbError) -> ApiError {
        self.failed.set(true);
        if error.retry {
            self.retry.set(true);
        }
        storage(error.message)
    }

    /// Runs a statement; returns how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[&dyn ToValue]) -> Result<u64, ApiError> {
        let values: Vec<Value> = params.iter().map(|param| param.to_value()).collect();
        let result = self.statements.borrow_mut().execute(sql, &values);
        result.map_err(|error| self.failed(error))
    }

    /// Runs a query; returns its rows.
    pub fn rows(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Vec<Row>, ApiError> {
        let values: Vec<Value> = params.iter().map(|param| param.to_value()).collect();
        let result = self.statements.borrow_mut().query(sql, &values);
        result.map_err(|error| self.failed(error))
    }

    /// Runs a query; returns its first row, if any.
    pub fn row(&self, sql: &str, params: &[&dyn ToValue]) -> Result<Option<Row>, ApiError> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }
}

/// A storage failure as an API error.
pub fn storage(error: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::Internal, format!("storage failed: {error}"))
}

/// `?1`-style parameters as PostgreSQL's `$1` (outside quoted literals).
pub fn dollar_parameters(sql: &str) -> String {
    let mut quoted = false;
    sql.chars()
        .map(|char| match char {
            '\'' => {
                quoted = !quoted;
                char
            }
            '?' if !quoted => '$',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_dollars_outside_literals() {
        assert_eq!(
            dollar_parameters("SELECT '?1' WHERE a = ?1 AND b = ?12"),
            "SELECT '?1' WHERE a = $1 AND b = $12"
        );
    }
}
