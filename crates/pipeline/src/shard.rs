//! The shard thread: the only code that touches a tenant's engine and journal.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use keel_domain::{AccountId, ReportId, Side};
use keel_engine::{Command, Engine, Outcome};
use keel_trade_capture::TradeStatus;
use keel_wire::{AckResult, Instruction, PositionRow, Query, TradeStatusRow};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::TenantMetrics;
use crate::store::TenantStore;

/// Tunables, units last.
#[derive(Debug, Clone)]
pub struct ShardOptions {
    /// Requests a tenant's queue holds before submitters wait.
    pub queue_requests_max: usize,
    /// Most commands applied between two commits (more waiting requests wait for the next).
    pub batch_commands_max: usize,
}

impl Default for ShardOptions {
    fn default() -> Self {
        Self { queue_requests_max: 256, batch_commands_max: 20_000 }
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

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// Runs until the queue closes (shutdown) or a fault stops the tenant.
pub(crate) fn run(
    mut store: TenantStore,
    mut queue: mpsc::Receiver<Request>,
    metrics: Arc<TenantMetrics>,
    options: ShardOptions,
) {
    let tenant = store.engine().tenant();
    let mut batch: Vec<Request> = Vec::with_capacity(64);
    let mut answers: Vec<Answer> = Vec::with_capacity(64);
    while let Some(first) = queue.blocking_recv() {
        let mut commands = first.commands();
        batch.push(first);
        while commands < options.batch_commands_max {
            match queue.try_recv() {
                Ok(request) => {
                    commands += request.commands();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let timestamp_ns = now_ns();
        if let Err(fault) = stage_all(&mut store, &mut batch, timestamp_ns, &mut answers, &metrics)
            .and_then(|()| store.commit())
        {
            tracing::error!(%tenant, error = %fault, "tenant stopped");
            let text = format!("{fault:#}");
            for request in batch.drain(..) {
                reply(request, Answer::Failed(text.clone()));
            }
            return;
        }
        metrics.record_commit(commands as u64, started.elapsed().as_micros() as u64);
        metrics.set_last_sequence(store.engine().last_sequence());
        // Durable: now, and only now, the answers go out.
        let mut staged = answers.drain(..);
        for request in batch.drain(..) {
            let answer = match &request {
                Request::Submit { .. } => {
                    staged.next().unwrap_or(Answer::Failed("internal: missing answer".into()))
                }
                Request::Query { query, .. } => answer_query(store.engine(), query),
            };
            reply(request, answer);
        }
    }
    match store.close() {
        Ok(engine) => tracing::info!(%tenant, sequence = engine.last_sequence(), "tenant closed"),
        Err(error) => tracing::error!(%tenant, error = %error, "tenant did not close cleanly"),
    }
}

fn stage_all(
    store: &mut TenantStore,
    batch: &mut [Request],
    timestamp_ns: i64,
    answers: &mut Vec<Answer>,
    metrics: &TenantMetrics,
) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    for request in batch {
        let Request::Submit { instructions, .. } = request else { continue };
        let mut acks = Vec::with_capacity(instructions.len());
        // Taken, not cloned: the request only needs its reply channel from here on.
        for instruction in std::mem::take(instructions) {
            let command = match instruction {
                Instruction::Trade(report) => Command::Trade(report),
                Instruction::GiveUp(response) => Command::GiveUp(response),
                Instruction::AveragePrice(allocation) => Command::AveragePrice(allocation),
            };
            acks.push(match store.stage(command, timestamp_ns)? {
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
            });
        }
        answers.push(Answer::Acks(acks));
    }
    Ok(())
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
