//! The simulator's HTTP server: binds, accepts, and stops when dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::{Faults, SimConfig};

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("camera-sim cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A running simulator. Dropping it stops the server.
pub struct CameraSim {
    addr: SocketAddr,
    config: Arc<SimConfig>,
    faults: Faults,
    task: JoinHandle<()>,
}

impl CameraSim {
    /// Starts serving `config` on `addr` (port 0 picks a free port).
    pub async fn start(config: SimConfig, addr: SocketAddr) -> Result<CameraSim, SimError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let config = Arc::new(config);
        let faults = Faults::default();
        let task = tokio::spawn(accept_loop(listener, config.clone(), faults.clone()));
        Ok(CameraSim {
            addr,
            config,
            faults,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its base URL, `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it serves.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Its fault switches.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Serves until the task is stopped (for the `camera-sim` command).
    pub async fn wait(self) {
        let mut this = self;
        let _ = (&mut this.task).await;
    }
}

impl Drop for CameraSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, config: Arc<SimConfig>, faults: Faults) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let config = config.clone();
        let faults = faults.clone();
        // Finished connections are reaped as new ones arrive, and all of them
        // stop with the accept loop (the JoinSet aborts them on drop).
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let config = config.clone();
                let faults = faults.clone();
                async move {
                    let started = std::time::Instant::now();
                    let method = request.method().clone();
                    let path = request.uri().path().to_string();
                    let response = crate::api::handle(&config, &faults, request).await;
                    // The time to the answer's head: a recording streams on after.
                    tracing::debug!(
                        "{method} {path} {} {:?}",
                        response.status().as_u16(),
                        started.elapsed()
                    );
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("camera-sim connection ended: {error}");
            }
        });
    }
}
