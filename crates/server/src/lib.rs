//! keel's TCP service. `serve` accepts native-protocol connections, authenticates each to one
//! tenant, hands its batches to the tenant's shard through the pipeline, and writes the
//! acknowledgements back in order once they are durable. Also: a Prometheus metrics endpoint,
//! limits on everything, and a graceful shutdown that drains and syncs.
//!
//! # Layout
//! - `config`: `ServerConfig` with embedded defaults, `keel.toml` and `KEEL_*` overrides.
//! - `auth`: tenant credentials, stored as salted keyed BLAKE3 hashes.
//! - `session`: one connection: logon, batches, queries, heartbeats, protocol errors.
//! - `serve` (here): the accept loop, the connection limit, metrics, shutdown.

pub mod auth;
pub mod config;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use keel_pipeline::{DataDir, Pipeline};
use keel_wire::{encode_frame, error_code, ServerMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

pub use config::ServerConfig;

/// What a running server shares with its sessions.
#[derive(Debug)]
pub struct Shared {
    pub config: ServerConfig,
    pub data: DataDir,
    pub pipeline: Arc<Pipeline>,
    pub shutdown: watch::Receiver<bool>,
}

/// The bound sockets of a started server.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub native: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// Binds the listeners and runs until `shutdown` turns true; then stops accepting, lets the
/// sessions finish the frame in hand, and returns. The caller then shuts the pipeline down
/// (draining and syncing every tenant).
pub async fn serve(
    config: ServerConfig,
    pipeline: Arc<Pipeline>,
    shutdown: watch::Receiver<bool>,
    bound: tokio::sync::oneshot::Sender<Bound>,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen).await?;
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(TcpListener::bind(address).await?),
        None => None,
    };
    let addresses = Bound {
        native: listener.local_addr()?,
        metrics: metrics_listener.as_ref().map(TcpListener::local_addr).transpose()?,
    };
    tracing::info!(native = %addresses.native, metrics = ?addresses.metrics, "listening");
    let _ = bound.send(addresses);
    let shared = Arc::new(Shared {
        data: DataDir::new(&config.data_dir),
        config,
        pipeline,
        shutdown: shutdown.clone(),
    });
    if let Some(listener) = metrics_listener {
        tokio::spawn(serve_metrics(listener, shared.clone()));
    }
    let connections = Arc::new(Semaphore::new(shared.config.connections_max));
    let mut stop = shutdown.clone();
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                match connections.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        sessions.spawn(async move {
                            session::run(stream, peer, shared).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        tracing::warn!(%peer, "connection refused: too many connections");
                        tokio::spawn(refuse(stream, error_code::TOO_MANY_CONNECTIONS, "too many connections"));
                    }
                }
            }
        }
        while sessions.try_join_next().is_some() {}
    }
    tracing::info!("shutting down: no longer accepting; waiting for sessions");
    drop(listener);
    let deadline = tokio::time::sleep(std::time::Duration::from_secs(10));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = sessions.join_next() => if next.is_none() { break },
            _ = &mut deadline => {
                sessions.abort_all();
                break;
            }
        }
    }
    Ok(())
}

/// Sends one error frame and closes.
async fn refuse(mut stream: TcpStream, code: u16, text: &str) {
    let mut frame = Vec::new();
    encode_frame(&ServerMessage::Error { code, text: text.to_owned() }, &mut frame);
    let _ = stream.write_all(&frame).await;
    let _ = stream.shutdown().await;
}

/// A minimal HTTP endpoint: `GET /metrics` in Prometheus text format, anything else 404.
async fn serve_metrics(listener: TcpListener, shared: Arc<Shared>) {
    let mut stop = shared.shutdown.clone();
    loop {
        let (mut stream, _) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted { Ok(pair) => pair, Err(_) => continue },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut request))
                    .await;
            let Ok(Ok(n)) = read else { return };
            let wanted = request[..n].starts_with(b"GET /metrics");
            let (status, body) = if wanted {
                ("200 OK", metrics_text(&shared))
            } else {
                ("404 Not Found", "not found\n".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

pub fn metrics_text(shared: &Shared) -> String {
    let mut out = String::new();
    keel_pipeline::metrics::render_preamble(&mut out);
    for handle in shared.pipeline.tenants() {
        handle.metrics.render(handle.tenant.as_str(), handle.queue_depth(), &mut out);
    }
    out
}
