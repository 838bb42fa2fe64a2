//! The shard thread: the only code that touches a tenant's engine and journal.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use keel_domain::{AccountId, ReportId, Side};
use keel_engine::{Command, Engine, Outcome};
use keel_trade_capture::TradeStatus;
use keel_wire::{AckResult, Instruction, PositionRow, Query, TradeStatusRow};
use tokio::sync::{mpsc, oneshot};

use keel_journal::{Durable, OnDurable};

use crate::metrics::TenantMetrics;
use crate::store::TenantStore;

/// Tunables, units last.
#[derive(Debug, Clone)]
pub struct ShardOptions {
    /// Requests a tenant's queue holds before submitters wait.
    pub queue_requests_max: usize,
    /// Most commands applied between two hand-offs to the journal writer (more waiting
    /// requests go in the next batch). 1,000 rather than 4,000: a batch's probed state still
    /// fits in cache when it is applied, and every answer in a batch waits for all of it
    /// (docs/benchmarks.md: higher closed-loop throughput and a shorter open-loop tail).
    pub batch_commands_max: usize,
    /// Batches applied but not yet durable before the shard waits for the disk.
    pub in_flight_max: usize,
}

impl Default for ShardOptions {
    fn default() -> Self {
        Self { queue_requests_max: 256, batch_commands_max: 1_000, in_flight_max: 4 }
    }
}

/// Work for a tenant, with the channel its answer goes back on.
#[derive(Debug)]
pub enum Request {
    Submit { instructions: Vec<Instruction>, reply: oneshot::Sender<Answer> },
    Query { query: Query, reply: oneshot::Sender<Answer> },
}

impl Request {
    fn commands(&self) -> usize {
        match self {
            Request::Submit { instructions, .. } => instructions.len(),
            Request::Query { .. } => 0,
        }
    }
}

/// What the shard answers. Acknowledgements are only sent once durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Acks(Vec<AckResult>),
    Positions(Vec<PositionRow>),
    TradeStatus(Option<TradeStatusRow>),
    /// The tenant stopped (a journal or engine fault); nothing of this request is durable
    /// unless a later recovery finds it in the journal.
    Failed(String),
}

/// While batches are being made durable and nothing new is queued, the shard parks until the
/// journal writer reports a commit or a new request is queued (each unparks it), or this long
/// at most.
const QUEUE_POLL: std::time::Duration = std::time::Duration::from_micros(200);

/// A batch whose staging and hand-off to the writer take this long or more is logged (debug):
/// where an open loop's tail comes from.
const SLOW_STEP: std::time::Duration = std::time::Duration::from_millis(2);

/// A group commit (the journal's write and `sync_data`) this long or more is logged (debug),
/// with the durable sequence when the shard took its timing (the commit's own, or a later one
/// when several were reported together): lined up with the state passes' lines (`engine image
/// taken` to `state pass done`), it says whether a snapshot's writes shared the disk with it.
const SLOW_COMMIT_MICROS: u64 = 2_000;

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// A batch's requests with their answers (computed at staging), released by the journal
/// writer's thread the moment the batch is durable (`TenantStore::then`), or failed. Before,
/// the shard released them when it next looked, after applying whatever it had started
/// meanwhile: at 400k trades a second that was most of the time, and every answer waited for
/// the shard's next batch as well as its own (docs/benchmarks.md, twenty-first session).
struct Release {
    requests: Vec<(Request, Answer)>,
    commands: usize,
    started: Instant,
    metrics: Arc<TenantMetrics>,
}

impl OnDurable for Release {
    fn durable(mut self: Box<Self>, durable: Durable) {
        self.metrics.set_last_sequence(durable.sequence);
        let micros = self.started.elapsed().as_micros() as u64;
        self.metrics.record_commit(self.commands as u64, micros);
        for (request, answer) in self.requests.drain(..) {
            reply(request, answer);
        }
    }

    fn failed(mut self: Box<Self>, why: &str) {
        for (request, _) in self.requests.drain(..) {
            reply(request, Answer::Failed(why.to_owned()));
        }
    }
}

impl Drop for Release {
    /// Never run (the writer's thread ended, or the batch never reached it): failed, so that
    /// no request goes unanswered.
    fn drop(&mut self) {
        for (request, _) in self.requests.drain(..) {
            reply(
                request,
                Answer::Failed("the tenant stopped before this batch was durable".into()),
            );
        }
    }
}

/// Runs until the queue closes (shutdown) or a fault stops the tenant.
///
/// The loop is a pipeline: take what is queued (up to `batch_commands_max` commands), apply it
/// and hand it to the journal writer with its answers, which the writer releases once it is
/// durable (`Release`). So while one batch syncs, the next is being applied, even when it
/// arrives during the sync. With the queue empty it blocks on the queue, batches in flight or
/// not: they need nothing more from it. It waits for the writer only when `in_flight_max`
/// batches are waiting, and when the store holds answers of its own (a batch of queries,
/// nothing to write): then it parks until the writer reports a commit or a request is queued,
/// whichever comes first. (It used to be woken by every commit, to release its answers: one
/// more wake-up per batch, on the busiest thread.)
pub(crate) fn run(
    mut store: TenantStore,
    mut queue: mpsc::Receiver<Request>,
    metrics: Arc<TenantMetrics>,
    options: ShardOptions,
) {
    let tenant = store.engine().tenant();
    store.wake_on_durable(std::thread::current());
    // The last sequence of each batch handed to the writer and not yet known durable.
    let mut pending: VecDeque<u64> = VecDeque::with_capacity(8);
    loop {
        let next = if pending.is_empty() || !store.holds_answers() {
            match queue.blocking_recv() {
                Some(request) => Some(request),
                None => break, // Closed and drained: shut down.
            }
        } else {
            queue.try_recv().ok()
        };
        let result = match next {
            Some(first) => {
                if !pending.is_empty() {
                    // The reports in since the last look: their batches come back for reuse
                    // before this one is staged. A failure shows again at the flush.
                    if let Ok(durable) = store.poll_durable() {
                        forget_durable(&mut pending, durable);
                    }
                }
                let mut requests = Vec::new();
                let started = Instant::now();
                let (commands, staged) =
                    stage_batch(&mut store, first, &mut queue, &mut requests, &metrics, &options);
                let sequence = store.engine().last_sequence();
                let applied = started.elapsed();
                let flushed = match staged {
                    Ok(()) => {
                        let metrics = metrics.clone();
                        store.then(Box::new(Release { requests, commands, started, metrics }));
                        pending.push_back(sequence);
                        store.flush()
                    }
                    Err(fault) => {
                        // Nothing of this batch goes to the journal: its requests fail here.
                        let text = format!("{fault:#}");
                        for (request, _) in requests {
                            reply(request, Answer::Failed(text.clone()));
                        }
                        Err(fault)
                    }
                };
                let step = started.elapsed();
                if step >= SLOW_STEP {
                    tracing::debug!(
                        %tenant,
                        sequence,
                        commands,
                        apply_us = applied.as_micros() as u64,
                        flush_us = (step - applied).as_micros() as u64,
                        "slow shard step"
                    );
                }
                flushed.and_then(|_| match pending.front() {
                    // Backpressure: never more than `in_flight_max` batches awaiting the disk.
                    Some(&oldest) if pending.len() > options.in_flight_max => {
                        store.wait_durable(oldest)
                    }
                    _ => store.poll_durable(),
                })
            }
            // Nothing new: wait for the oldest batch to become durable.
            None => match pending.front() {
                Some(&oldest) => match store.poll_durable() {
                    Ok(durable) if durable < oldest => {
                        std::thread::park_timeout(QUEUE_POLL);
                        store.poll_durable()
                    }
                    polled => polled,
                },
                None => continue,
            },
        };
        let durable = match result {
            Ok(durable) => durable,
            Err(fault) => {
                // Batches already with the writer are answered by it: as durable if they are,
                // failed if not (`Release`).
                tracing::error!(%tenant, error = %fault, "tenant stopped");
                return;
            }
        };
        forget_durable(&mut pending, durable);
        metrics.set_last_sequence(durable);
        store.take_commit_micros(|micros| {
            metrics.record_sync(micros);
            if micros >= SLOW_COMMIT_MICROS {
                tracing::debug!(%tenant, durable, micros, "slow journal commit");
            }
        });
        store.take_pass_timings(|timing| match timing {
            crate::store::PassTiming::Image(micros) => metrics.record_image(micros),
            crate::store::PassTiming::Pass(micros) => metrics.record_pass(micros),
            crate::store::PassTiming::IndexBuild { installed } => {
                metrics.record_index_build(installed)
            }
            crate::store::PassTiming::Copies(chunks) => metrics.record_copies(chunks),
            crate::store::PassTiming::ReserveLate => metrics.record_reserve_late(),
        });
    }
    match store.close() {
        Ok(engine) => tracing::info!(%tenant, sequence = engine.last_sequence(), "tenant closed"),
        Err(error) => tracing::error!(%tenant, error = %error, "tenant did not close cleanly"),
    }
}

/// Drops from `pending` (the last sequence of each batch with the writer) the batches that
/// `durable` covers: their answers went out with them.
fn forget_durable(pending: &mut VecDeque<u64>, durable: u64) {
    while pending.front().is_some_and(|&oldest| oldest <= durable) {
        pending.pop_front();
    }
}

/// Takes `first` and whatever else is queued (up to `batch_commands_max` commands), applies it
/// and computes every answer into `requests`; returns how many commands that was. Queries are
/// answered here, against the state after the commands before them, and released with their
/// batch. After a fault the rest of the requests are still taken (their answers never go out:
/// the caller fails them all).
fn stage_batch(
    store: &mut TenantStore,
    first: Request,
    queue: &mut mpsc::Receiver<Request>,
    requests: &mut Vec<(Request, Answer)>,
    metrics: &TenantMetrics,
    options: &ShardOptions,
) -> (usize, anyhow::Result<()>) {
    let timestamp_ns = now_ns();
    let mut commands = 0;
    let mut next = Some(first);
    let mut fault = None;
    while let Some(mut request) = next.take() {
        commands += request.commands();
        let answer = if fault.is_some() {
            Answer::Failed(String::new())
        } else {
            match &mut request {
                Request::Submit { instructions, .. } => {
                    stage_submit(store, instructions, timestamp_ns, metrics).unwrap_or_else(
                        |error| {
                            fault = Some(error);
                            Answer::Failed(String::new())
                        },
                    )
                }
                Request::Query { query, .. } => answer_query(store.engine(), query),
            }
        };
        requests.push((request, answer));
        if commands < options.batch_commands_max {
            next = queue.try_recv().ok();
        }
    }
    (commands, fault.map_or(Ok(()), Err))
}

fn stage_submit(
    store: &mut TenantStore,
    instructions: &mut Vec<Instruction>,
    timestamp_ns: i64,
    metrics: &TenantMetrics,
) -> anyhow::Result<Answer> {
    let mut acks = Vec::with_capacity(instructions.len());
    // Taken, not cloned: the request only needs its reply channel from here on.
    let mut rest = std::mem::take(instructions).into_iter();
    while !rest.as_slice().is_empty() {
        // Bring the state the next trades touch into cache first, with the misses overlapping.
        let ahead = rest.as_slice().len().min(keel_engine::PROBE_AHEAD);
        let reports = rest.as_slice()[..ahead].iter().filter_map(|i| match i {
            Instruction::Trade(report) => Some(report),
            _ => None,
        });
        std::hint::black_box(store.engine().probe(reports));
        for instruction in rest.by_ref().take(ahead) {
            acks.push(stage_one(store, instruction, timestamp_ns, metrics)?);
        }
    }
    Ok(Answer::Acks(acks))
}

/// Stages one instruction and counts its outcome.
fn stage_one(
    store: &mut TenantStore,
    instruction: Instruction,
    timestamp_ns: i64,
    metrics: &TenantMetrics,
) -> anyhow::Result<AckResult> {
    use std::sync::atomic::Ordering::Relaxed;
    let command = match instruction {
        Instruction::Trade(report) => Command::Trade(report),
        Instruction::GiveUp(response) => Command::GiveUp(response),
        Instruction::AveragePrice(allocation) => Command::AveragePrice(allocation),
    };
    Ok(match store.stage(command, timestamp_ns)? {
        Outcome::Accepted { sequence } => {
            metrics.accepted.fetch_add(1, Relaxed);
            AckResult::Accepted { sequence }
        }
        Outcome::Duplicate { sequence } => {
            metrics.duplicates.fetch_add(1, Relaxed);
            AckResult::Duplicate { sequence }
        }
        Outcome::Rejected(reason) => {
            metrics.rejected.fetch_add(1, Relaxed);
            AckResult::Rejected {
                code: reason.code(),
                rule: reason.name().to_owned(),
                text: reason.to_string(),
            }
        }
    })
}

fn reply(request: Request, answer: Answer) {
    // A connection that went away does not want its answer; what was committed stays.
    let _ = match request {
        Request::Submit { reply, .. } | Request::Query { reply, .. } => reply.send(answer),
    };
}

fn answer_query(engine: &Engine, query: &Query) -> Answer {
    match query {
        Query::Positions { account, .. } => Answer::Positions(positions(engine, account.as_ref())),
        Query::TradeStatus { report_id, .. } => {
            Answer::TradeStatus(trade_status(engine, report_id))
        }
    }
}

pub fn positions(engine: &Engine, account: Option<&AccountId>) -> Vec<PositionRow> {
    engine
        .positions()
        .into_iter()
        .filter(|view| account.is_none_or(|account| view.account.id == *account))
        .map(|view| PositionRow {
            account: view.account.id,
            instrument: view.instrument.id,
            net: view.position.net(),
            long: view.position.long(),
            short: view.position.short(),
            average_long: view.position.average_open_price(Side::Buy),
            average_short: view.position.average_open_price(Side::Sell),
            realized: view.position.realized(),
            currency: view.instrument.currency,
        })
        .collect()
}

fn trade_status(engine: &Engine, report_id: &ReportId) -> Option<TradeStatusRow> {
    let capture = engine.capture();
    let key = capture.find_trade(report_id)?;
    let trade = capture.trade(key);
    let reference = capture.reference();
    let status = match trade.status {
        TradeStatus::Active => "active",
        TradeStatus::PendingGiveUp { .. } => "pending-give-up",
        TradeStatus::GivenUp { .. } => "given-up",
        TradeStatus::Cancelled => "cancelled",
    };
    Some(TradeStatusRow {
        report_id: *report_id,
        account: reference.account(trade.account).id,
        instrument: reference.instrument(trade.instrument).id,
        version: trade.version,
        status: status.to_owned(),
        sequence: capture.report(report_id).map_or(0, |r| r.sequence),
    })
}
