//! The client a brokerage embeds. One `Client` is one session: log on, then submit batches
//! (pipelined: any number may be in flight; each answer comes back to its caller), query
//! positions and trade status. `submit` waits for the acknowledgement; `send` returns once the
//! batch is written, with a `PendingAcks` to await later, so batches that depend on each other
//! (an amend behind its trade) can be streamed in order without waiting for each ack. A batch is only acknowledged once durable; a batch whose
//! acknowledgement never arrived (the connection broke) is kept, and `reconnect` resubmits
//! every such batch on a new session: what was already booked comes back as a duplicate, so
//! each trade is booked exactly once.
//!
//! ```no_run
//! # async fn example() -> Result<(), keel_client::ClientError> {
//! let client = keel_client::Client::connect("127.0.0.1:7070", "demo".parse().unwrap(), "SECRET", "desk-1").await?;
//! let acks = client.submit(vec![/* keel_wire::Instruction::Trade(...) */]).await?;
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use keel_domain::{AccountId, ReportId, TenantId};
use keel_wire::{
    decode_payload, encode_frame, read_frame, write_frame, AckResult, ClientMessage, Instruction,
    Logon, PositionRow, Query, ServerMessage, SubmitBatch, TradeStatusRow, WireError,
    FRAME_BYTES_MAX,
};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::oneshot;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("connection: {0}")]
    Connection(String),
    #[error("logon refused ({code}): {text}")]
    LogonRejected { code: u16, text: String },
    #[error("server error ({code}): {text}")]
    Server { code: u16, text: String },
    #[error("connection closed before the answer")]
    Closed,
    #[error("unexpected answer: {0}")]
    Protocol(String),
}

impl From<WireError> for ClientError {
    fn from(error: WireError) -> Self {
        ClientError::Connection(error.to_string())
    }
}

impl From<std::io::Error> for ClientError {
    fn from(error: std::io::Error) -> Self {
        ClientError::Connection(error.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Batch(u64),
    Query(u64),
}

type Waiters = HashMap<Key, oneshot::Sender<Result<ServerMessage, ClientError>>>;

#[derive(Debug)]
struct Inner {
    waiters: parking_lot::Mutex<Waiters>,
    /// Batches sent and not acknowledged yet, by id, for `reconnect`.
    in_flight: parking_lot::Mutex<BTreeMap<u64, Vec<Instruction>>>,
    /// Set once the session has failed; later calls fail at once.
    failed: parking_lot::Mutex<Option<ClientError>>,
}

/// One logged-on session.
#[derive(Debug)]
pub struct Client {
    tenant: TenantId,
    credential: String,
    client_name: String,
    last_sequence: u64,
    writer: tokio::sync::Mutex<(OwnedWriteHalf, Vec<u8>)>,
    inner: Arc<Inner>,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
        // Acknowledgements still awaited through `PendingAcks` can no longer arrive.
        self.inner.failed.lock().get_or_insert(ClientError::Closed);
        for (_, waiter) in self.inner.waiters.lock().drain() {
            let _ = waiter.send(Err(ClientError::Closed));
        }
    }
}

impl Client {
    /// Connects and logs on.
    pub async fn connect(
        address: impl ToSocketAddrs,
        tenant: TenantId,
        credential: &str,
        client_name: &str,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(address).await?;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let mut scratch = Vec::with_capacity(64 << 10);
        let logon = Logon {
            tenant,
            credential: credential.to_owned(),
            client_name: client_name.to_owned(),
        };
        write_frame(&mut writer, &ClientMessage::Logon(logon), &mut scratch).await?;
        let mut buffer = Vec::new();
        read_frame(&mut reader, &mut buffer, FRAME_BYTES_MAX).await?;
        let last_sequence = match decode_payload::<ServerMessage>(&buffer, FRAME_BYTES_MAX)? {
            ServerMessage::LogonAck { last_sequence, .. } => last_sequence,
            ServerMessage::LogonReject { code, text } | ServerMessage::Error { code, text } => {
                return Err(ClientError::LogonRejected { code, text })
            }
            other => return Err(ClientError::Protocol(format!("{other:?}"))),
        };
        let inner = Arc::new(Inner {
            waiters: parking_lot::Mutex::new(HashMap::new()),
            in_flight: parking_lot::Mutex::new(BTreeMap::new()),
            failed: parking_lot::Mutex::new(None),
        });
        let reader = tokio::spawn(read_loop(reader, buffer, inner.clone()));
        Ok(Client {
            tenant,
            credential: credential.to_owned(),
            client_name: client_name.to_owned(),
            last_sequence,
            writer: tokio::sync::Mutex::new((writer, scratch)),
            inner,
            next_id: AtomicU64::new(1),
            reader,
        })
    }

    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The tenant's last durable sequence when this session logged on.
    pub fn last_sequence_at_logon(&self) -> u64 {
        self.last_sequence
    }

    /// Submits a batch and waits for its acknowledgement (one result per instruction, sent once
    /// durable). Many submits may be in flight at once from concurrent tasks; for batches that
    /// must reach the server in a given order, use `send`.
    pub async fn submit(
        &self,
        instructions: Vec<Instruction>,
    ) -> Result<Vec<AckResult>, ClientError> {
        self.send(instructions).await?.acks().await
    }

    /// Writes a batch to the server and returns once it is written, with a handle on its
    /// acknowledgement. Batches sent one after another reach the server, and are applied, in
    /// that order, while their acknowledgements are awaited concurrently (pipelining).
    pub async fn send(&self, instructions: Vec<Instruction>) -> Result<PendingAcks, ClientError> {
        let batch_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let message =
            ClientMessage::SubmitBatch(SubmitBatch { batch_id, tenant: self.tenant, instructions });
        let inner = &self.inner;
        // Once encoded, the instructions themselves (not a copy) are kept for `reconnect`
        // until their acknowledgement arrives.
        let keep = move |message: ClientMessage| {
            if let ClientMessage::SubmitBatch(batch) = message {
                inner.in_flight.lock().insert(batch_id, batch.instructions);
            }
        };
        let receiver = self.send_request(Key::Batch(batch_id), message, keep).await?;
        Ok(PendingAcks { batch_id, receiver, inner: self.inner.clone() })
    }

    /// Positions of one account, or of the whole tenant.
    pub async fn positions(
        &self,
        account: Option<AccountId>,
    ) -> Result<Vec<PositionRow>, ClientError> {
        let query_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        match self
            .request(
                Key::Query(query_id),
                ClientMessage::Query(Query::Positions { query_id, account }),
                drop,
            )
            .await?
        {
            ServerMessage::Positions { positions, .. } => Ok(positions),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }

    pub async fn trade_status(
        &self,
        report_id: ReportId,
    ) -> Result<Option<TradeStatusRow>, ClientError> {
        let query_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        match self
            .request(
                Key::Query(query_id),
                ClientMessage::Query(Query::TradeStatus { query_id, report_id }),
                drop,
            )
            .await?
        {
            ServerMessage::TradeStatus { status, .. } => Ok(status),
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }

    /// Logs out; acknowledgements already on their way still arrive.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let mut writer = self.writer.lock().await;
        let (half, scratch) = &mut *writer;
        write_frame(half, &ClientMessage::Logout, scratch).await?;
        Ok(())
    }

    /// Batches sent whose acknowledgement has not arrived.
    pub fn unacknowledged(&self) -> usize {
        self.inner.in_flight.lock().len()
    }

    /// Opens a new session to `address` and resubmits, in order, every batch this one sent
    /// without an acknowledgement. Returns the new session and those batches' results.
    pub async fn reconnect(
        self,
        address: impl ToSocketAddrs,
    ) -> Result<(Client, Vec<Vec<AckResult>>), ClientError> {
        let pending: Vec<Vec<Instruction>> =
            std::mem::take(&mut *self.inner.in_flight.lock()).into_values().collect();
        let client =
            Client::connect(address, self.tenant, &self.credential, &self.client_name).await?;
        let mut results = Vec::with_capacity(pending.len());
        for instructions in pending {
            results.push(client.submit(instructions).await?);
        }
        Ok((client, results))
    }

    /// Sends `message` and waits for the answer keyed `key`.
    async fn request(
        &self,
        key: Key,
        message: ClientMessage,
        encoded: impl FnOnce(ClientMessage),
    ) -> Result<ServerMessage, ClientError> {
        let receiver = self.send_request(key, message, encoded).await?;
        receiver.await.map_err(|_| ClientError::Closed)?
    }

    /// Writes `message`, registered to receive the answer keyed `key`. `encoded` receives the
    /// message back once it is encoded, just before its bytes are written.
    async fn send_request(
        &self,
        key: Key,
        message: ClientMessage,
        encoded: impl FnOnce(ClientMessage),
    ) -> Result<Answer, ClientError> {
        if let Some(error) = self.inner.failed.lock().clone() {
            return Err(error);
        }
        let (sender, receiver) = oneshot::channel();
        self.inner.waiters.lock().insert(key, sender);
        {
            let mut writer = self.writer.lock().await;
            let (half, scratch) = &mut *writer;
            scratch.clear();
            encode_frame(&message, scratch);
            encoded(message);
            if let Err(error) = half.write_all(scratch).await {
                self.inner.waiters.lock().remove(&key);
                return Err(WireError::from(error).into());
            }
        }
        Ok(receiver)
    }
}

type Answer = oneshot::Receiver<Result<ServerMessage, ClientError>>;

/// A batch written to the server whose acknowledgement is still to come (`Client::send`).
#[derive(Debug)]
pub struct PendingAcks {
    batch_id: u64,
    receiver: Answer,
    inner: Arc<Inner>,
}

impl PendingAcks {
    /// Waits for the batch's acknowledgement: one result per instruction, sent once durable.
    pub async fn acks(self) -> Result<Vec<AckResult>, ClientError> {
        match self.receiver.await.map_err(|_| ClientError::Closed)?? {
            ServerMessage::BatchAck { results, .. } => {
                self.inner.in_flight.lock().remove(&self.batch_id);
                Ok(results)
            }
            other => Err(ClientError::Protocol(format!("{other:?}"))),
        }
    }
}

async fn read_loop(
    mut reader: tokio::net::tcp::OwnedReadHalf,
    mut buffer: Vec<u8>,
    inner: Arc<Inner>,
) {
    let failure = loop {
        if let Err(error) = read_frame(&mut reader, &mut buffer, FRAME_BYTES_MAX).await {
            break match error {
                WireError::Closed => ClientError::Closed,
                other => ClientError::Connection(other.to_string()),
            };
        }
        let message = match decode_payload::<ServerMessage>(&buffer, FRAME_BYTES_MAX) {
            Ok(message) => message,
            Err(error) => break ClientError::Connection(error.to_string()),
        };
        let key = match &message {
            ServerMessage::BatchAck { batch_id, .. } => Key::Batch(*batch_id),
            ServerMessage::Positions { query_id, .. }
            | ServerMessage::TradeStatus { query_id, .. } => Key::Query(*query_id),
            ServerMessage::Error { code, text } => {
                break ClientError::Server { code: *code, text: text.clone() }
            }
            ServerMessage::Heartbeat
            | ServerMessage::LogonAck { .. }
            | ServerMessage::LogonReject { .. } => continue,
        };
        if let Some(waiter) = inner.waiters.lock().remove(&key) {
            let _ = waiter.send(Ok(message));
        }
    };
    *inner.failed.lock() = Some(failure.clone());
    for (_, waiter) in inner.waiters.lock().drain() {
        let _ = waiter.send(Err(failure.clone()));
    }
}
