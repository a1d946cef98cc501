//! The registry's storage backends the conformance tests run on: a state
//! store, SQLite or PostgreSQL (a fresh database per test on the server
//! `CORRAL_TEST_POSTGRES` names), and a file store, the blocks folder or
//! Azurite (a fresh container per test in the emulator `CORRAL_TEST_AZURITE`
//! names). `tests/run.sh` starts both servers and exports their URLs.
//! [`on_every_backend!`](crate::on_every_backend) turns one test function
//! taking a [`Backend`] into one test per combination.

use std::path::Path;
use std::sync::Arc;

use corral_registry::Store;
use corral_registry::blobs::azure::{AZURITE_KEY, AzureBlobs};

/// The environment variable naming the PostgreSQL server for tests, as a URL
/// to a database the tests may create databases from.
pub const POSTGRES_URL_VAR: &str = "CORRAL_TEST_POSTGRES";

/// The environment variable naming Azurite's blob endpoint for tests, with
/// its account: `http://127.0.0.1:PORT/devstoreaccount1`.
pub const AZURITE_URL_VAR: &str = "CORRAL_TEST_AZURITE";

/// Where a test registry keeps its state and its files' bytes.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The state store.
    pub state: State,
    /// The file store.
    pub files: Files,
}

/// A test registry's state store.
#[derive(Debug, Clone)]
pub enum State {
    /// SQLite in the data folder (the default).
    Sqlite,
    /// PostgreSQL: the URL of a database of this test's own.
    Postgres(String),
}

/// A test registry's file store.
#[derive(Debug, Clone)]
pub enum Files {
    /// The data folder's `blocks/` (the default).
    Folder,
    /// Azurite: the URL of a container of this test's own.
    Azurite(String),
}

/// A server a test needs is not configured: one line, and the test skips.
fn not_configured(test: &str, what: &str, var: &str) {
    eprintln!(
        "skipped {test} on {what}: {var} is not set (bash tests/run.sh starts a server and sets it)"
    );
}

impl Backend {
    /// SQLite and the blocks folder: the embedded default.
    pub const SQLITE: Backend = Backend {
        state: State::Sqlite,
        files: Files::Folder,
    };

    /// PostgreSQL with Azurite when it is configured, else with the data
    /// folder's blocks: what several nodes share.
    pub fn postgres_shared(test: &str) -> Option<Backend> {
        if std::env::var_os(AZURITE_URL_VAR).is_some() {
            Backend::postgres_azurite(test)
        } else {
            Backend::postgres(test)
        }
    }

    /// PostgreSQL and the blocks folder (see [`Backend::postgres_state`]).
    pub fn postgres(test: &str) -> Option<Backend> {
        Some(Backend {
            state: Backend::postgres_state(test)?,
            files: Files::Folder,
        })
    }

    /// PostgreSQL and Azurite, each fresh for `test`, or `None` when either is
    /// not configured.
    pub fn postgres_azurite(test: &str) -> Option<Backend> {
        let files = Backend::azurite_files(test)?;
        Some(Backend {
            state: Backend::postgres_state(test)?,
            files,
        })
    }

    /// SQLite and a fresh Azurite container, or `None` when Azurite is not
    /// configured.
    pub fn sqlite_azurite(test: &str) -> Option<Backend> {
        Some(Backend {
            state: State::Sqlite,
            files: Backend::azurite_files(test)?,
        })
    }

    /// The blob endpoint of Azurite with its account, when configured.
    pub fn azurite_endpoint(test: &str) -> Option<String> {
        match std::env::var(AZURITE_URL_VAR) {
            Ok(url) => Some(url.trim_end_matches('/').to_string()),
            Err(_) => {
                // tests/run.sh starts Azurite unless npm is missing; CI has npm.
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI=true and {AZURITE_URL_VAR} is not set: {test} would skip on Azurite"
                );
                not_configured(test, "Azurite", AZURITE_URL_VAR);
                None
            }
        }
    }

    /// A container of its own for `test` in Azurite (made when first opened).
    fn azurite_files(test: &str) -> Option<Files> {
        let endpoint = Backend::azurite_endpoint(test)?;
        Some(Files::Azurite(format!(
            "{endpoint}/t-{:016x}",
            rand::random::<u64>()
        )))
    }

    /// A fresh PostgreSQL database for `test`, or `None` (after printing one
    /// line why) when no test server is configured. A configured server that
    /// does not answer fails the test: CI must not skip silently.
    pub fn postgres_state(test: &str) -> Option<State> {
        let Ok(server) = std::env::var(POSTGRES_URL_VAR) else {
            // tests/run.sh installs and starts PostgreSQL; CI runs it as root.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true and {POSTGRES_URL_VAR} is not set: {test} would skip on PostgreSQL"
            );
            not_configured(test, "PostgreSQL", POSTGRES_URL_VAR);
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
        Some(State::Postgres(url))
    }

    /// The PostgreSQL database's URL, if the state is there.
    pub fn postgres_url(&self) -> Option<&str> {
        match &self.state {
            State::Postgres(url) => Some(url),
            State::Sqlite => None,
        }
    }

    /// The Azurite container's URL, if the files are there.
    pub fn container_url(&self) -> Option<&str> {
        match &self.files {
            Files::Azurite(url) => Some(url),
            Files::Folder => None,
        }
    }

    /// Opens the store of a registry in `dir` on this backend.
    pub fn open(&self, dir: &Path) -> Store {
        let store = match &self.state {
            State::Sqlite => Store::open(dir),
            State::Postgres(url) => Store::open_postgres(dir, url),
        }
        .expect("the registry's store opens");
        match &self.files {
            Files::Folder => store,
            Files::Azurite(url) => store.with_blobs(Arc::new(
                AzureBlobs::open(url, AZURITE_KEY)
                    .unwrap_or_else(|why| panic!("{AZURITE_URL_VAR}: {why}")),
            )),
        }
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
/// `sqlite::name` (SQLite and the blocks folder), `postgres_azurite::name`
/// and `sqlite_azurite::name`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::backend::Backend::SQLITE).await
                }
            )*
        }
        mod postgres_azurite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = $crate::backend::Backend::postgres_azurite(stringify!($name)) {
                        super::$name(backend).await
                    }
                }
            )*
        }
        mod sqlite_azurite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = $crate::backend::Backend::sqlite_azurite(stringify!($name)) {
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
