//! The helper thread behind a tenant's chunk stocks (`keel_domain::stock`).
//!
//! The shard, and replay before it, take the new chunks of a growing tenant's state from
//! buffers this helper has already written, so that the first write to each fresh page (a
//! fault, and in a VM often a host fault behind it) is paid here and not on the one thread the
//! tenant's acknowledgements wait for. See docs/architecture.md, "Chunks faulted in ahead".

use std::sync::Arc;
use std::time::Duration;

use keel_domain::stock::{self, Stocks};
use keel_domain::TenantId;

/// Runs `f` with this thread's new `CowVec` chunks taken from stocks that a helper thread
/// (`stock-<tenant>`, a `Role::Spare`) tops up whenever one runs low. The helper stops and is
/// joined when `f` returns (or unwinds). Without a thread for the helper, `f` runs with chunks
/// allocated as it goes, as it would without this.
///
/// `KEEL_CHUNK_STOCK=off` (or `0`) turns it off for the process: a diagnostic switch, for
/// comparing runs of one binary.
pub fn with_chunk_stock<R>(tenant: TenantId, f: impl FnOnce() -> R) -> R {
    if !enabled() {
        return f();
    }
    let stocks = Stocks::new();
    let filled = stocks.clone();
    let spawned = std::thread::Builder::new().name(format!("stock-{tenant}")).spawn(move || {
        keel_sched::enter(keel_sched::Role::Spare);
        fill(&filled);
    });
    let helper = match spawned {
        Ok(thread) => thread,
        Err(error) => {
            tracing::debug!(%tenant, %error, "no thread for the chunk stock");
            return f();
        }
    };
    stocks.set_helper(helper.thread().clone());
    let _stopped = Stop { stocks: stocks.clone(), helper: Some(helper) };
    let _installed = stock::install(stocks);
    f()
}

fn enabled() -> bool {
    !matches!(std::env::var("KEEL_CHUNK_STOCK").as_deref(), Ok("off" | "0" | "false"))
}

/// The helper's loop: a round of restocking whenever a stock ran low, until closed.
///
/// The helper is a `Role::Spare`: in the idle class it tops the stocks up on CPU nobody else
/// wants, and should a stock fall under a quarter of its usual size meanwhile
/// (`Stocks::take_urgent`), it hurries in the normal class until the round is done. A round
/// in the normal class can fault in a mebibyte or two (tens of megabytes before an image):
/// done in one go it held a core for 1 to 1.7 ms, which a shard woken there waited out, so
/// it gives way every 100 us.
fn fill(stocks: &Stocks) {
    let spare = keel_sched::current_class() == keel_sched::Class::Idle;
    let mut give_way = keel_sched::GiveWay::new();
    while !stocks.is_closed() {
        if stocks.wanted() {
            let mut hurrying = false;
            let hurry_if_urgent = |hurrying: &mut bool| {
                if spare && !*hurrying && stocks.take_urgent() {
                    keel_sched::hurry();
                    *hurrying = true;
                }
            };
            hurry_if_urgent(&mut hurrying);
            stocks.restock_with(&mut || {
                hurry_if_urgent(&mut hurrying);
                give_way.now();
            });
            if hurrying {
                keel_sched::enter(keel_sched::Role::Spare);
            }
        } else {
            // Woken by the thread that took a buffer when a stock fell under half, and by
            // `close`; the timeout only bounds a missed wake.
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }
}

/// Closes the stocks and joins their helper, on return or unwind.
struct Stop {
    stocks: Arc<Stocks>,
    helper: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Stop {
    fn drop(&mut self) {
        self.stocks.close();
        if let Some(helper) = self.helper.take() {
            let _ = helper.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_domain::CowVec;
    use std::time::Instant;

    fn tenant() -> TenantId {
        "stocked".parse().expect("tenant id")
    }

    #[test]
    fn the_helper_restocks_while_f_runs_and_stops_after() {
        let (cow, held) = with_chunk_stock(tenant(), || {
            let stocks = stock::installed().expect("installed while f runs");
            let mut cow: CowVec<u64> = CowVec::new();
            // The first chunk makes the stock, empty, and wakes the helper.
            cow.extend(0..2 * CowVec::<u64>::chunk_len() as u64);
            let started = Instant::now();
            while stocks.buffers() == 0 && started.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(1));
            }
            (cow, stocks.buffers())
        });
        assert!(held > 0, "the helper made no buffers in 10 s");
        assert!(stock::installed().is_none(), "uninstalled after f");
        assert!(cow.iter().zip(0..).all(|(&a, b)| a == b));
    }

    #[test]
    fn a_panic_in_f_still_stops_the_helper() {
        let result =
            std::panic::catch_unwind(|| with_chunk_stock(tenant(), || panic!("the shard failed")));
        assert!(result.is_err());
        assert!(stock::installed().is_none(), "uninstalled on unwind");
    }
}
