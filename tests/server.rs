//! The server end to end over 127.0.0.1: real listener, real clients, several tenants; every
//! kind of bad input; restart and recovery; resubmission after a lost acknowledgement.
#![allow(clippy::unwrap_used, reason = "tests: a failed setup should fail loudly")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use keel_client::Client;
use keel_domain::{
    PositionEffect, Price, Quantity, Side, TenantId, TradeAction, TradeDetails, TradeReport,
};
use keel_pipeline::{DataDir, Pipeline};
use keel_server::ServerConfig;
use keel_wire::{
    decode_payload, encode_frame, error_code, read_frame, AckResult, ClientMessage, Instruction,
    Logon, PositionRow, ServerMessage, SubmitBatch,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(10);

struct Server {
    address: SocketAddr,
    metrics: Option<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pipeline: Arc<Pipeline>,
}

impl Server {
    async fn start(data: &DataDir, tune: impl FnOnce(&mut ServerConfig)) -> Server {
        let mut config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            metrics_listen: None,
            data_dir: data.root.clone(),
            ..ServerConfig::default()
        };
        tune(&mut config);
        let pipeline = Arc::new(Pipeline::new());
        let started = keel::serve::start_tenants(&pipeline, data, &config).unwrap();
        assert!(!started.is_empty());
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let (bound, address) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(keel_server::serve(config, pipeline.clone(), shutdown, bound));
        let bound = address.await.unwrap();
        Server { address: bound.native, metrics: bound.metrics, stop, task, pipeline }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap().unwrap();
        let pipeline = self.pipeline;
        tokio::task::spawn_blocking(move || pipeline.shutdown()).await.unwrap();
    }
}

fn tenant(name: &str) -> TenantId {
    name.parse().unwrap()
}

/// Two tenants with the shipped reference data, today's business date; returns credentials.
fn setup(data: &DataDir) -> (String, String) {
    let create = |name| {
        keel::serve::create_tenant(
            data,
            tenant(name),
            keel::defaults::INSTRUMENTS_CSV,
            keel::defaults::ACCOUNTS_CSV,
            Default::default(),
        )
        .unwrap()
    };
    (create("alpha"), create("beta"))
}

fn trade(report: &str, account: &str, side: Side, quantity: i64, price: &str) -> Instruction {
    Instruction::Trade(TradeReport {
        report_id: report.parse().unwrap(),
        action: TradeAction::New(TradeDetails {
            account: account.parse().unwrap(),
            instrument: "ESH7".parse().unwrap(),
            side,
            quantity: Quantity::new(quantity),
            price: Price::parse(price).unwrap(),
            trade_date: keel::serve::today(),
            venue: None,
            executing_firm: "KEELCLR".parse().unwrap(),
            clearing_firm: "KEELCLR".parse().unwrap(),
            give_up_to: None,
            position_effect: PositionEffect::Open,
            average_price_group: None,
            allocations: Vec::new(),
        }),
    })
}

/// A deterministic stream of trades over three accounts.
fn batches(prefix: &str, count: usize, size: usize) -> Vec<Vec<Instruction>> {
    let accounts = ["ACME-01", "BRAVO-01", "CAPITAL-01"];
    (0..count)
        .map(|b| {
            (0..size)
                .map(|i| {
                    let n = b * size + i;
                    let side = if n.is_multiple_of(3) { Side::Sell } else { Side::Buy };
                    let price = format!("{}", 6000 + (n % 40) as i64 - 20);
                    trade(
                        &format!("{prefix}-{n:05}"),
                        accounts[n % 3],
                        side,
                        1 + (n % 7) as i64,
                        &price,
                    )
                })
                .collect()
        })
        .collect()
}

/// Net positions per (account, instrument) computed by folding the instructions directly.
fn expected_net(all: &[Vec<Instruction>]) -> std::collections::BTreeMap<String, i64> {
    let mut net = std::collections::BTreeMap::new();
    for instruction in all.iter().flatten() {
        if let Instruction::Trade(TradeReport { action: TradeAction::New(d), .. }) = instruction {
            *net.entry(format!("{}/{}", d.account, d.instrument)).or_insert(0) +=
                d.quantity.get() * d.side.sign();
        }
    }
    net
}

fn net_of(rows: &[PositionRow]) -> std::collections::BTreeMap<String, i64> {
    rows.iter().map(|r| (format!("{}/{}", r.account, r.instrument), r.net)).collect()
}

async fn read_message(stream: &mut TcpStream) -> Option<ServerMessage> {
    let mut buffer = Vec::new();
    tokio::time::timeout(LIMIT, read_frame(stream, &mut buffer, 1 << 20)).await.unwrap().ok()?;
    decode_payload(&buffer, 1 << 20).ok()
}

async fn assert_closed(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    let n = tokio::time::timeout(LIMIT, stream.read(&mut byte)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "the server should close the connection");
}

fn frame(message: &ClientMessage) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(message, &mut out);
    out
}

fn logon(name: &str, credential: &str) -> ClientMessage {
    ClientMessage::Logon(Logon {
        tenant: tenant(name),
        credential: credential.into(),
        client_name: "test".into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_tenants_book_exactly_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let (alpha_secret, beta_secret) = setup(&data);
    let server = Server::start(&data, |_| {}).await;

    // Two clients on alpha, one on beta, all pipelining concurrently.
    let alpha_a = Arc::new(
        Client::connect(server.address, tenant("alpha"), &alpha_secret, "a").await.unwrap(),
    );
    let alpha_b = Arc::new(
        Client::connect(server.address, tenant("alpha"), &alpha_secret, "b").await.unwrap(),
    );
    let beta =
        Arc::new(Client::connect(server.address, tenant("beta"), &beta_secret, "c").await.unwrap());
    let work = [
        (alpha_a.clone(), batches("A", 20, 50)),
        (alpha_b.clone(), batches("B", 20, 50)),
        (beta.clone(), batches("C", 10, 100)),
    ];
    let mut tasks = Vec::new();
    for (client, batches) in work.clone() {
        tasks.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            for batch in batches {
                let client = client.clone();
                pending.push(tokio::spawn(async move { client.submit(batch).await.unwrap() }));
            }
            let mut accepted = 0;
            for acks in pending {
                accepted += acks
                    .await
                    .unwrap()
                    .iter()
                    .filter(|a| matches!(a, AckResult::Accepted { .. }))
                    .count();
            }
            accepted
        }));
    }
    let accepted: Vec<usize> = futures_join(tasks).await;
    assert_eq!(accepted, vec![1000, 1000, 1000]);

    let alpha_expected = expected_net(&[work[0].1.clone(), work[1].1.clone()].concat());
    let beta_expected = expected_net(&work[2].1);
    assert_eq!(net_of(&alpha_a.positions(None).await.unwrap()), alpha_expected);
    assert_eq!(net_of(&beta.positions(None).await.unwrap()), beta_expected);
    let status = alpha_b.trade_status("A-00007".parse().unwrap()).await.unwrap().unwrap();
    assert_eq!((status.status.as_str(), status.version), ("active", 1));
    drop((alpha_a, alpha_b, beta));
    server.stop().await;

    // Restart: everything is rebuilt from the journals.
    let server = Server::start(&data, |_| {}).await;
    let alpha = Client::connect(server.address, tenant("alpha"), &alpha_secret, "a").await.unwrap();
    assert_eq!(net_of(&alpha.positions(None).await.unwrap()), alpha_expected);
    let beta = Client::connect(server.address, tenant("beta"), &beta_secret, "c").await.unwrap();
    assert_eq!(net_of(&beta.positions(None).await.unwrap()), beta_expected);
    drop((alpha, beta));
    server.stop().await;
}

async fn futures_join<T: Send + 'static>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks {
        out.push(tokio::time::timeout(Duration::from_secs(60), task).await.unwrap().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_acknowledgement_is_resubmitted_and_booked_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let (secret, _) = setup(&data);
    let server = Server::start(&data, |_| {}).await;
    let batch = batches("R", 1, 200).remove(0);

    // A client sends a batch and vanishes before reading the acknowledgement.
    let mut raw = TcpStream::connect(server.address).await.unwrap();
    raw.write_all(&frame(&logon("alpha", &secret))).await.unwrap();
    assert!(matches!(read_message(&mut raw).await, Some(ServerMessage::LogonAck { .. })));
    raw.write_all(&frame(&ClientMessage::SubmitBatch(SubmitBatch {
        batch_id: 1,
        tenant: tenant("alpha"),
        instructions: batch.clone(),
    })))
    .await
    .unwrap();
    drop(raw);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // It comes back and resubmits everything it has no acknowledgement for.
    let client = Client::connect(server.address, tenant("alpha"), &secret, "again").await.unwrap();
    let acks = client.submit(batch.clone()).await.unwrap();
    let duplicates = acks.iter().filter(|a| matches!(a, AckResult::Duplicate { .. })).count();
    let accepted = acks.iter().filter(|a| matches!(a, AckResult::Accepted { .. })).count();
    assert_eq!(duplicates + accepted, 200);
    assert_eq!(
        net_of(&client.positions(None).await.unwrap()),
        expected_net(std::slice::from_ref(&batch))
    );
    // Client::reconnect resubmits its own unacknowledged batches the same way.
    let (client, results) = client.reconnect(server.address).await.unwrap();
    assert!(results.is_empty());
    assert_eq!(
        client
            .submit(batch.clone())
            .await
            .unwrap()
            .iter()
            .filter(|a| matches!(a, AckResult::Duplicate { .. }))
            .count(),
        200
    );
    drop(client);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_closes_that_connection_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let (alpha, beta) = setup(&data);
    let server = Server::start(&data, |config| {
        config.connections_max = 6;
        config.write_timeout_ms = 500;
        config.session_batches_in_flight_max = 2;
        config.batch_instructions_max = 100;
    })
    .await;
    // A well-behaved client that must keep working throughout.
    let good = Client::connect(server.address, tenant("beta"), &beta, "good").await.unwrap();

    let mut version_two = frame(&ClientMessage::Heartbeat);
    version_two[4] = 2;
    let mut undecodable = frame(&ClientMessage::Heartbeat);
    undecodable[5] = 77;
    let submit_before_logon = frame(&ClientMessage::SubmitBatch(SubmitBatch {
        batch_id: 1,
        tenant: tenant("alpha"),
        instructions: vec![],
    }));
    // (case, frames sent, the error code expected; None: a logon rejection)
    type Case<'a> = (&'a str, Vec<Vec<u8>>, Option<u16>);
    let cases: Vec<Case> = vec![
        (
            "garbage bytes",
            vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()],
            Some(error_code::FRAME_TOO_LARGE),
        ),
        (
            "oversize length",
            vec![(2u32 << 20).to_le_bytes().to_vec()],
            Some(error_code::FRAME_TOO_LARGE),
        ),
        ("unknown version", vec![version_two], Some(error_code::UNSUPPORTED_VERSION)),
        ("undecodable frame", vec![undecodable], Some(error_code::MALFORMED_FRAME)),
        ("submit before logon", vec![submit_before_logon], Some(error_code::NOT_LOGGED_ON)),
        ("wrong credential", vec![frame(&logon("alpha", "not-the-secret"))], None),
        (
            "logon to one tenant, batch for another",
            vec![
                frame(&logon("alpha", &alpha)),
                frame(&ClientMessage::SubmitBatch(SubmitBatch {
                    batch_id: 1,
                    tenant: tenant("beta"),
                    instructions: batches("X", 1, 1).remove(0),
                })),
            ],
            Some(error_code::TENANT_MISMATCH),
        ),
        (
            "batch above the limit",
            vec![
                frame(&logon("alpha", &alpha)),
                frame(&ClientMessage::SubmitBatch(SubmitBatch {
                    batch_id: 1,
                    tenant: tenant("alpha"),
                    instructions: batches("Y", 1, 101).remove(0),
                })),
            ],
            Some(error_code::BATCH_TOO_LARGE),
        ),
    ];
    for (name, frames, code) in cases {
        let mut stream = TcpStream::connect(server.address).await.unwrap();
        for bytes in frames {
            stream.write_all(&bytes).await.unwrap();
        }
        let mut last = None;
        while let Some(message) = read_message(&mut stream).await {
            let done =
                matches!(message, ServerMessage::Error { .. } | ServerMessage::LogonReject { .. });
            last = Some(message);
            if done {
                break;
            }
        }
        match (code, last) {
            (Some(code), Some(ServerMessage::Error { code: got, .. })) => {
                assert_eq!(got, code, "{name}")
            }
            (None, Some(ServerMessage::LogonReject { code, .. })) => {
                assert_eq!(code, error_code::BAD_CREDENTIAL, "{name}")
            }
            (_, other) => panic!("{name}: got {other:?}"),
        }
        assert_closed(&mut stream).await;
        assert!(good.positions(None).await.is_ok(), "{name}: the good client still works");
    }

    // A client that vanishes in the middle of a frame.
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream.write_all(&frame(&logon("alpha", &alpha))).await.unwrap();
    let _ = read_message(&mut stream).await;
    let whole = frame(&ClientMessage::SubmitBatch(SubmitBatch {
        batch_id: 1,
        tenant: tenant("alpha"),
        instructions: batches("V", 1, 10).remove(0),
    }));
    stream.write_all(&whole[..whole.len() / 2]).await.unwrap();
    drop(stream);

    // A slow client that never reads its acknowledgements is cut off; nobody else waits.
    let mut slow = TcpStream::connect(server.address).await.unwrap();
    slow.write_all(&frame(&logon("alpha", &alpha))).await.unwrap();
    let flood = batches("S", 400, 100);
    let writer = tokio::spawn(async move {
        for (id, batch) in flood.into_iter().enumerate() {
            let bytes = frame(&ClientMessage::SubmitBatch(SubmitBatch {
                batch_id: id as u64,
                tenant: tenant("alpha"),
                instructions: batch,
            }));
            if slow.write_all(&bytes).await.is_err() {
                return true;
            }
        }
        // Keep the socket open (and unread) until the server gives up on it.
        let mut byte = [0u8; 1];
        let _ = tokio::time::timeout(Duration::from_secs(15), slow.read(&mut byte)).await;
        false
    });
    for round in 0..5 {
        let acks = good.submit(batches(&format!("G{round}"), 1, 10).remove(0)).await.unwrap();
        assert_eq!(acks.len(), 10);
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), writer).await;

    // Too many connections: the next one past the limit is refused with an error frame.
    let mut held = Vec::new();
    for _ in 0..6 {
        let stream = TcpStream::connect(server.address).await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = None;
    for stream in held.iter_mut() {
        let mut byte = [0u8; 4];
        if let Ok(Ok(4)) =
            tokio::time::timeout(Duration::from_millis(300), stream.peek(&mut byte)).await
        {
            refused = read_message(stream).await;
        }
    }
    assert!(
        matches!(
            refused,
            Some(ServerMessage::Error { code: error_code::TOO_MANY_CONNECTIONS, .. })
        ),
        "{refused:?}"
    );
    drop(held);

    // Nothing acknowledged was lost, and the server still serves.
    // (The held connections' sessions release their slots as they notice the close.)
    let mut after = None;
    for _ in 0..50 {
        match Client::connect(server.address, tenant("beta"), &beta, "after").await {
            Ok(client) => {
                after = Some(client);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let after = after.expect("a slot frees up once the held connections are gone");
    let rows = after.positions(None).await.unwrap();
    let expected: Vec<Vec<Instruction>> =
        (0..5).map(|round| batches(&format!("G{round}"), 1, 10).remove(0)).collect();
    assert_eq!(net_of(&rows), expected_net(&expected));
    drop((good, after));
    server.stop().await;
}

/// `Client::send` writes batches in order and returns before their acknowledgements: an amend
/// and a cancel sent right behind the trade they target are applied after it, whichever
/// acknowledgement is awaited first; and dropping the client fails acknowledgements still
/// awaited instead of leaving them hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_batches_apply_in_order_and_a_dropped_client_fails_its_pending_acks() {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let (secret, _) = setup(&data);
    let server = Server::start(&data, |config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        // A state pass (image, then hash and snapshot in the background) after 50 commands.
        config.snapshot_interval = 50;
    })
    .await;
    let client =
        Client::connect(server.address, tenant("alpha"), &secret, "ordered").await.unwrap();
    let mut pending = Vec::new();
    for n in 0..50 {
        let id = format!("O-{n}");
        let Instruction::Trade(original) = trade(&id, "ACME-01", Side::Buy, 2, "6000") else {
            unreachable!()
        };
        let TradeAction::New(details) = original.action.clone() else { unreachable!() };
        let amend = TradeReport {
            report_id: format!("{id}-A").parse().unwrap(),
            action: TradeAction::Amend {
                target: original.report_id,
                details: TradeDetails { quantity: Quantity::new(3), ..details },
            },
        };
        let cancel = TradeReport {
            report_id: format!("{id}-C").parse().unwrap(),
            action: TradeAction::Cancel { target: original.report_id },
        };
        pending.push(client.send(vec![Instruction::Trade(original)]).await.unwrap());
        pending.push(client.send(vec![Instruction::Trade(amend)]).await.unwrap());
        if n % 2 == 0 {
            pending.push(client.send(vec![Instruction::Trade(cancel)]).await.unwrap());
        }
    }
    // Awaited newest first: the order of waiting changes nothing.
    let mut results = Vec::new();
    while let Some(handle) = pending.pop() {
        results.extend(tokio::time::timeout(LIMIT, handle.acks()).await.unwrap().unwrap());
    }
    assert_eq!(results.len(), 125);
    assert!(results.iter().all(|a| matches!(a, AckResult::Accepted { .. })), "{results:?}");
    // 25 trades left, each amended to 3 contracts.
    let rows = client.positions(Some("ACME-01".parse().unwrap())).await.unwrap();
    assert_eq!(rows.iter().map(|row| row.net).sum::<i64>(), 75);

    // The metrics endpoint shows the journal's group commits (write + sync) for the tenant.
    let mut http = TcpStream::connect(server.metrics.unwrap()).await.unwrap();
    http.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut page = String::new();
    tokio::time::timeout(LIMIT, tokio::io::AsyncReadExt::read_to_string(&mut http, &mut page))
        .await
        .unwrap()
        .unwrap();
    let syncs = page
        .lines()
        .find_map(|line| line.strip_prefix("keel_journal_sync_seconds_count{tenant=\"alpha\"} "))
        .and_then(|count| count.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no sync count for alpha in:\n{page}"));
    assert!(syncs >= 1, "{syncs} syncs");
    assert!(page.contains("keel_commands_total{tenant=\"alpha\",outcome=\"accepted\"} 125"));
    // Every command is counted in exactly one released batch.
    assert!(page.contains("keel_commit_batch_commands_sum{tenant=\"alpha\"} 125"), "{page}");
    // The state pass's image was timed (the pass itself finishes in its own time).
    let images = page
        .lines()
        .find_map(|line| line.strip_prefix("keel_engine_image_seconds_count{tenant=\"alpha\"} "))
        .and_then(|count| count.parse::<u64>().ok());
    assert!(images.is_some_and(|images| images >= 1), "{page}");
    assert!(page.contains("keel_state_pass_seconds_count{tenant=\"alpha\"} "), "{page}");

    // A batch sent and the client dropped before its acknowledgement: the handle fails.
    let batch = batches("D", 1, 5_000).remove(0);
    let handle = client.send(batch).await.unwrap();
    drop(client);
    let outcome = tokio::time::timeout(LIMIT, handle.acks()).await.unwrap();
    assert!(outcome.is_err() || outcome.is_ok_and(|acks| acks.len() == 5_000));
    server.stop().await;
}
