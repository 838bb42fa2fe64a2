//! One client connection. Reading and writing are two tasks joined by a bounded queue of
//! outgoing items; acknowledgements leave in the order their batches arrived, each once its
//! tenant's shard has made it durable. A client that stops reading fills the queue, which
//! stops this session from reading more; nothing else waits for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_pipeline::{Answer, Request, TenantHandle, TenantMetrics};
use keel_wire::{
    decode_client_message, error_code, read_frame, write_frame, ClientMessage, Query,
    ServerMessage, WireError,
};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::Shared;

/// What the writer task sends, in order.
#[derive(Debug)]
enum Outgoing {
    Message(ServerMessage),
    /// An answer still being made durable by the shard.
    Pending(Pending, oneshot::Receiver<Answer>),
    /// A batch's acknowledgement still being made durable, with when its frame was decoded and
    /// where its latency, up to the acknowledgement's write, is recorded.
    Batch(u64, oneshot::Receiver<Answer>, Instant, Arc<TenantMetrics>),
    /// A protocol error: sent, then the connection is closed.
    Fatal(u16, String),
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    Batch(u64),
    Query(u64),
}

pub async fn run(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let (reader, writer) = stream.into_split();
    let (outgoing, queue) = mpsc::channel(shared.config.session_batches_in_flight_max.max(1));
    let write_timeout = Duration::from_millis(shared.config.write_timeout_ms);
    let writer = tokio::spawn(write_loop(writer, queue, write_timeout, peer));
    let tenant = read_loop(reader, &outgoing, &shared, peer).await;
    drop(outgoing);
    let _ = writer.await;
    tracing::debug!(%peer, tenant = ?tenant, "session closed");
}

/// Reads and dispatches frames until the client leaves, breaks the protocol, idles out, or the
/// server shuts down. Returns the tenant the session was logged on to, if any.
async fn read_loop(
    mut reader: OwnedReadHalf,
    outgoing: &mpsc::Sender<Outgoing>,
    shared: &Shared,
    peer: SocketAddr,
) -> Option<keel_domain::TenantId> {
    let config = &shared.config;
    let idle = Duration::from_millis(config.idle_timeout_ms);
    let mut shutdown = shared.shutdown.clone();
    let mut buffer = Vec::with_capacity(64 << 10);
    let mut session: Option<TenantHandle> = None;
    let fatal = |code: u16, text: String| async move {
        let _ = outgoing.send(Outgoing::Fatal(code, text)).await;
    };
    loop {
        let read = tokio::select! {
            _ = shutdown.changed() => {
                fatal(error_code::SHUTTING_DOWN, "server is shutting down".into()).await;
                return session.map(|s| s.tenant);
            }
            read = tokio::time::timeout(idle, read_frame(&mut reader, &mut buffer, config.frame_bytes_max)) => read,
        };
        let message = match read {
            Err(_) => {
                fatal(
                    error_code::IDLE_TIMEOUT,
                    format!("nothing received for {} ms", config.idle_timeout_ms),
                )
                .await;
                return session.map(|s| s.tenant);
            }
            Ok(Err(WireError::Closed | WireError::Truncated | WireError::Io(_))) => {
                return session.map(|s| s.tenant)
            }
            Ok(Err(error)) => {
                let code = match error {
                    WireError::FrameTooLarge { .. } => error_code::FRAME_TOO_LARGE,
                    WireError::UnsupportedVersion(_) => error_code::UNSUPPORTED_VERSION,
                    _ => error_code::MALFORMED_FRAME,
                };
                tracing::info!(%peer, %error, "protocol error");
                fatal(code, error.to_string()).await;
                return session.map(|s| s.tenant);
            }
            Ok(Ok(())) => match decode_client_message(&buffer, config.frame_bytes_max) {
                Ok(message) => message,
                Err(error) => {
                    let code = match error {
                        WireError::UnsupportedVersion(_) => error_code::UNSUPPORTED_VERSION,
                        _ => error_code::MALFORMED_FRAME,
                    };
                    tracing::info!(%peer, %error, "undecodable frame");
                    fatal(code, error.to_string()).await;
                    return session.map(|s| s.tenant);
                }
            },
        };
        let received = Instant::now();
        let step = match (&session, message) {
            (None, ClientMessage::Logon(logon)) => {
                let handle = shared.pipeline.tenant(&logon.tenant);
                match handle
                    .filter(|_| crate::auth::verify(&shared.data, logon.tenant, &logon.credential))
                {
                    Some(handle) => {
                        tracing::info!(%peer, tenant = %logon.tenant, client = %logon.client_name, "logged on");
                        let ack = ServerMessage::LogonAck {
                            tenant: handle.tenant,
                            last_sequence: handle.metrics.last_sequence(),
                        };
                        session = Some(handle);
                        Step::Send(Outgoing::Message(ack))
                    }
                    None => {
                        tracing::info!(%peer, tenant = %logon.tenant, "logon refused");
                        let reject = ServerMessage::LogonReject {
                            code: error_code::BAD_CREDENTIAL,
                            text: "unknown tenant or wrong credential".into(),
                        };
                        let _ = outgoing.send(Outgoing::Message(reject)).await;
                        Step::Close
                    }
                }
            }
            (None, ClientMessage::Heartbeat) => {
                Step::Send(Outgoing::Message(ServerMessage::Heartbeat))
            }
            (None, ClientMessage::Logout) => Step::Close,
            (None, _) => Step::Fatal(error_code::NOT_LOGGED_ON, "log on first".into()),
            (Some(_), ClientMessage::Logon(_)) => {
                Step::Fatal(error_code::ALREADY_LOGGED_ON, "already logged on".into())
            }
            (Some(handle), ClientMessage::SubmitBatch(batch)) => {
                if batch.tenant != handle.tenant {
                    Step::Fatal(
                        error_code::TENANT_MISMATCH,
                        format!(
                            "session is for tenant {}, batch is for {}",
                            handle.tenant, batch.tenant
                        ),
                    )
                } else if batch.instructions.len() > config.batch_instructions_max {
                    Step::Fatal(
                        error_code::BATCH_TOO_LARGE,
                        format!(
                            "{} instructions; at most {}",
                            batch.instructions.len(),
                            config.batch_instructions_max
                        ),
                    )
                } else {
                    let (reply, answer) = oneshot::channel();
                    match handle
                        .send(Request::Submit { instructions: batch.instructions, reply })
                        .await
                    {
                        Ok(()) => Step::Send(Outgoing::Batch(
                            batch.batch_id,
                            answer,
                            received,
                            handle.metrics.clone(),
                        )),
                        Err(error) => {
                            Step::Fatal(error_code::TENANT_UNAVAILABLE, error.to_string())
                        }
                    }
                }
            }
            (Some(handle), ClientMessage::Query(query)) => {
                let query_id = match &query {
                    Query::Positions { query_id, .. } | Query::TradeStatus { query_id, .. } => {
                        *query_id
                    }
                };
                let (reply, answer) = oneshot::channel();
                match handle.send(Request::Query { query, reply }).await {
                    Ok(()) => Step::Send(Outgoing::Pending(Pending::Query(query_id), answer)),
                    Err(error) => Step::Fatal(error_code::TENANT_UNAVAILABLE, error.to_string()),
                }
            }
            (Some(_), ClientMessage::Heartbeat) => {
                Step::Send(Outgoing::Message(ServerMessage::Heartbeat))
            }
            (Some(_), ClientMessage::Logout) => Step::Close,
        };
        match step {
            Step::Send(item) => {
                if outgoing.send(item).await.is_err() {
                    return session.map(|s| s.tenant);
                }
            }
            Step::Fatal(code, text) => {
                tracing::info!(%peer, code, %text, "closing session on protocol error");
                fatal(code, text).await;
                return session.map(|s| s.tenant);
            }
            Step::Close => return session.map(|s| s.tenant),
        }
    }
}

enum Step {
    Send(Outgoing),
    Fatal(u16, String),
    Close,
}

async fn write_loop(
    mut writer: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Outgoing>,
    timeout: Duration,
    peer: SocketAddr,
) {
    let mut scratch = Vec::with_capacity(64 << 10);
    while let Some(item) = queue.recv().await {
        let mut timed = None;
        let (message, last) = match item {
            Outgoing::Message(message) => (message, false),
            Outgoing::Fatal(code, text) => (ServerMessage::Error { code, text }, true),
            Outgoing::Batch(batch_id, answer, received, metrics) => {
                timed = Some((received, metrics));
                answer_message(Pending::Batch(batch_id), answer.await)
            }
            Outgoing::Pending(pending, answer) => answer_message(pending, answer.await),
        };
        match tokio::time::timeout(timeout, write_frame(&mut writer, &message, &mut scratch)).await
        {
            Ok(Ok(())) => {
                if let Some((received, metrics)) = timed {
                    metrics.record_batch_latency(received.elapsed().as_micros() as u64);
                }
            }
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "write failed");
                return;
            }
            Err(_) => {
                tracing::warn!(%peer, "client does not read its acknowledgements; disconnecting");
                return;
            }
        }
        if last {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

/// The message carrying a shard's answer, and whether the connection closes after it.
fn answer_message(
    pending: Pending,
    answer: Result<Answer, oneshot::error::RecvError>,
) -> (ServerMessage, bool) {
    match (pending, answer) {
        (Pending::Batch(batch_id), Ok(Answer::Acks(results))) => {
            (ServerMessage::BatchAck { batch_id, results }, false)
        }
        (Pending::Query(query_id), Ok(Answer::Positions(positions))) => {
            (ServerMessage::Positions { query_id, positions }, false)
        }
        (Pending::Query(query_id), Ok(Answer::TradeStatus(status))) => {
            (ServerMessage::TradeStatus { query_id, status }, false)
        }
        (_, Ok(Answer::Failed(text))) => {
            (ServerMessage::Error { code: error_code::TENANT_UNAVAILABLE, text }, true)
        }
        (_, Ok(other)) => (
            ServerMessage::Error {
                code: error_code::TENANT_UNAVAILABLE,
                text: format!("internal: unexpected answer {other:?}"),
            },
            true,
        ),
        (_, Err(_)) => (
            ServerMessage::Error {
                code: error_code::TENANT_UNAVAILABLE,
                text: "tenant stopped".into(),
            },
            true,
        ),
    }
}
