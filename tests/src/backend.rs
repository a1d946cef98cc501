//! The registry's storage backends the conformance tests run on: SQLite with
//! the blocks folder, and PostgreSQL (a fresh database per test on the
//! server `CORRAL_TEST_POSTGRES` names, which `tests/run.sh` starts and
//! exports). [`on_every_backend!`](crate::on_every_backend) turns one test
//! function taking a [`Backend`] into one test per backend.

use std::path::Path;

use corral_registry::Store;

/// The environment variable naming the PostgreSQL server for tests, as a URL
/// to a database the tests may create databases from.
pub const POSTGRES_URL_VAR: &str = "CORRAL_TEST_POSTGRES";

/// Where a test registry keeps its state.
#[derive(Debug, Clone)]
pub enum Backend {
    /// SQLite in the data folder (the default).
    Sqlite,
    /// PostgreSQL: the URL of a database of this test's own.
    Postgres(String),
}

impl Backend {
    /// A fresh PostgreSQL database for `test`, or `None` (after printing one
    /// line why) when no test server is configured. A configured server that
    /// does not answer fails the test: CI must not skip silently.
    pub fn postgres(test: &str) -> Option<Backend> {
        let Ok(server) = std::env::var(POSTGRES_URL_VAR) else {
            eprintln!(
                "skipped {test} on PostgreSQL: {POSTGRES_URL_VAR} is not set (bash tests/run.sh starts a server and sets it)"
            );
            return None;
        };
        let mut name: String = format!("t_{test}")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(48)
            .collect();
        name.push_str(&format!("_{:08x}", rand::random::<u32>()));
        let url = database_url(&server, &name);
        let created = std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&server, postgres::NoTls)
                .map_err(|error| format!("{POSTGRES_URL_VAR}={server} does not answer: {error}"))?;
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .map_err(|error| format!("cannot create database {name}: {error}"))
        })
        .join()
        .expect("creating a test database");
        if let Err(why) = created {
            panic!("{why}");
        }
        Some(Backend::Postgres(url))
    }

    /// Opens the store of a registry in `dir` on this backend.
    pub fn open(&self, dir: &Path) -> Store {
        match self {
            Backend::Sqlite => Store::open(dir),
            Backend::Postgres(url) => Store::open_postgres(dir, url),
        }
        .expect("the registry's store opens")
    }
}

/// `server` (a PostgreSQL URL) with its database replaced by `name`.
fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (server, String::new()),
    };
    let authority_end = base
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..authority_end])
}

/// Turns test functions `async fn name(backend: Backend)` into the tests
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::backend::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = $crate::backend::Backend::postgres(stringify!($name)) {
                        super::$name(backend).await
                    }
                }
            )*
        }
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_test_database_replaces_the_servers() {
        assert_eq!(
            super::database_url("postgres://u@127.0.0.1:5/postgres", "t_x"),
            "postgres://u@127.0.0.1:5/t_x"
        );
        assert_eq!(
            super::database_url("postgres://u@h?sslmode=disable", "t_x"),
            "postgres://u@h/t_x?sslmode=disable"
        );
    }
}
