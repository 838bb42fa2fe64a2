//! The pipeline between connections and tenants' state. Each tenant is owned outright by one
//! shard thread (its engine and journal: no lock on state); connections hand it requests over
//! a bounded queue; the shard drains what is waiting, applies it, makes it durable with one
//! commit, and only then answers each request through its own reply channel.
//!
//! # Layout
//! - `store`: `TenantStore` (engine + journal kept in step), `DataDir`, recovery and replay.
//! - `shard`: the shard thread: batching, group commit, replies, queries.
//! - `stock`: the helper that faults in a tenant's next chunks of state ahead of the shard.
//! - `metrics`: per-tenant counters and histograms, rendered as Prometheus text.
//! - `lib` (here): `Pipeline`, the registry of running tenants, and `TenantHandle`.
//!
//! Backpressure: a tenant's queue holds at most `queue_requests_max` requests; a connection
//! submitting to a full queue waits (asynchronously), so a busy tenant slows its own
//! connections only.

pub mod metrics;
pub mod shard;
pub mod stock;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;

use keel_domain::TenantId;
use parking_lot::RwLock;

pub use metrics::{Buckets, TenantMetrics};
pub use shard::{Answer, Request, ShardOptions};
pub use store::{DataDir, Recovery, StoreOptions, TenantStore};

/// A running tenant: where to send its requests.
#[derive(Debug, Clone)]
pub struct TenantHandle {
    pub tenant: TenantId,
    sender: tokio::sync::mpsc::Sender<Request>,
    /// The shard's thread, unparked after each request is queued: a shard with batches in
    /// flight and an empty queue parks until the journal writer or a new request wakes it.
    shard: std::thread::Thread,
    pub metrics: Arc<TenantMetrics>,
}

/// Why a request could not be handed to a tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PipelineError {
    #[error("tenant {0} is not running")]
    TenantUnavailable(TenantId),
    #[error("tenant {0} stopped: {1}")]
    TenantStopped(TenantId, String),
}

impl TenantHandle {
    /// Queues a request, waiting while the tenant's queue is full.
    pub async fn send(&self, request: Request) -> Result<(), PipelineError> {
        self.sender
            .send(request)
            .await
            .map_err(|_| PipelineError::TenantUnavailable(self.tenant))?;
        self.shard.unpark();
        Ok(())
    }

    /// Requests waiting in the tenant's queue.
    pub fn queue_depth(&self) -> usize {
        self.sender.max_capacity() - self.sender.capacity()
    }
}

/// The running tenants.
#[derive(Debug, Default)]
pub struct Pipeline {
    tenants: RwLock<HashMap<TenantId, TenantHandle>>,
    threads: parking_lot::Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens a tenant (recovering it from its journal) and starts its shard thread.
    pub fn start_tenant(
        &self,
        data: &DataDir,
        tenant: TenantId,
        store_options: StoreOptions,
        shard_options: ShardOptions,
    ) -> anyhow::Result<Recovery> {
        let (store, recovery) = TenantStore::open(data, tenant, store_options)?;
        let (sender, receiver) = tokio::sync::mpsc::channel(shard_options.queue_requests_max);
        let metrics = Arc::new(TenantMetrics::default());
        metrics.set_last_sequence(store.engine().last_sequence());
        let shard_metrics = metrics.clone();
        let thread =
            std::thread::Builder::new().name(format!("shard-{tenant}")).spawn(move || {
                keel_sched::enter(keel_sched::Role::Latency);
                stock::with_chunk_stock(tenant, || {
                    shard::run(store, receiver, shard_metrics, shard_options)
                })
            })?;
        let handle = TenantHandle { tenant, sender, shard: thread.thread().clone(), metrics };
        self.tenants.write().insert(tenant, handle);
        self.threads.lock().push(thread);
        Ok(recovery)
    }

    pub fn tenant(&self, tenant: &TenantId) -> Option<TenantHandle> {
        self.tenants.read().get(tenant).cloned()
    }

    pub fn tenants(&self) -> Vec<TenantHandle> {
        let mut handles: Vec<TenantHandle> = self.tenants.read().values().cloned().collect();
        handles.sort_unstable_by_key(|h| h.tenant);
        handles
    }

    /// Stops every tenant: their queues close, each shard drains what is queued, commits,
    /// checkpoints and closes its journal. Blocks until all shard threads have finished.
    pub fn shutdown(&self) {
        self.tenants.write().clear();
        let threads: Vec<_> = std::mem::take(&mut *self.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
    }
}
