//! Per-tenant metrics, updated by the shard thread with relaxed atomics and read by the
//! metrics endpoint.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds of the commit latency histogram, in microseconds.
pub const COMMIT_BUCKETS_US: [u64; 12] =
    [50, 100, 200, 300, 500, 750, 1_000, 2_000, 5_000, 10_000, 50_000, 100_000];
/// Upper bounds of the journal sync histogram, in microseconds: up to a second, since a busy
/// disk's sync tail reaches hundreds of milliseconds.
pub const SYNC_BUCKETS_US: [u64; 15] = [
    50, 100, 200, 300, 500, 750, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000,
    1_000_000,
];
/// Upper bounds of the state pass histogram, in microseconds: a pass over a large tenant, with
/// its snapshot, takes seconds on the low-priority helper thread.
pub const PASS_BUCKETS_US: [u64; 11] = [
    10_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
    30_000_000, 60_000_000,
];
/// Upper bounds of the batch size histogram, in commands per commit.
pub const BATCH_BUCKETS: [u64; 8] = [1, 10, 100, 500, 1_000, 5_000, 10_000, 50_000];

/// A latency histogram read back: `counts[i]` values were at most `bounds_us[i]`
/// microseconds (and above the bound before it); the last count is above every bound.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Buckets {
    pub bounds_us: Vec<u64>,
    pub counts: Vec<u64>,
}

impl Buckets {
    fn read(bounds_us: &[u64], counts: &[AtomicU64]) -> Buckets {
        Buckets {
            bounds_us: bounds_us.to_vec(),
            counts: counts.iter().map(|count| count.load(Relaxed)).collect(),
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other`'s counts (the same bounds: another tenant's histogram of the same kind).
    pub fn add(&mut self, other: &Buckets) {
        if self.counts.is_empty() {
            *self = other.clone();
            return;
        }
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
    }

    /// The bound that a `quantile` (0 to 1) of the values are at most: the upper bound of the
    /// bucket where that quantile falls. `None` when it falls above the last bound, or when
    /// nothing was recorded.
    pub fn quantile_at_most_us(&self, quantile: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return self.bounds_us.get(index).copied();
            }
        }
        None
    }
}

#[derive(Debug, Default)]
pub struct TenantMetrics {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub commits: AtomicU64,
    last_sequence: AtomicU64,
    commit_us_buckets: [AtomicU64; COMMIT_BUCKETS_US.len() + 1],
    commit_us_sum: AtomicU64,
    batch_buckets: [AtomicU64; BATCH_BUCKETS.len() + 1],
    batch_sum: AtomicU64,
    sync_us_buckets: [AtomicU64; SYNC_BUCKETS_US.len() + 1],
    sync_us_sum: AtomicU64,
    image_us_buckets: [AtomicU64; SYNC_BUCKETS_US.len() + 1],
    image_us_sum: AtomicU64,
    pass_us_buckets: [AtomicU64; PASS_BUCKETS_US.len() + 1],
    pass_us_sum: AtomicU64,
    batch_latency_us_buckets: [AtomicU64; SYNC_BUCKETS_US.len() + 1],
    batch_latency_us_sum: AtomicU64,
    index_builds_installed: AtomicU64,
    index_builds_late: AtomicU64,
    copied_chunks: AtomicU64,
    reserves_late: AtomicU64,
}

impl TenantMetrics {
    /// The last durable sequence is now at least `sequence` (set by the shard and by the
    /// journal writer as it releases answers: it never goes back).
    pub fn set_last_sequence(&self, sequence: u64) {
        self.last_sequence.fetch_max(sequence, Relaxed);
    }

    pub fn last_sequence(&self) -> u64 {
        self.last_sequence.load(Relaxed)
    }

    /// One group commit's write + `sync_data`, as the journal writer timed it.
    pub fn record_sync(&self, micros: u64) {
        observe(&SYNC_BUCKETS_US, &self.sync_us_buckets, &self.sync_us_sum, micros);
    }

    /// The shard's stall to take an engine image for a state pass.
    pub fn record_image(&self, micros: u64) {
        observe(&SYNC_BUCKETS_US, &self.image_us_buckets, &self.image_us_sum, micros);
    }

    /// A report index built off the shard: installed, or late (the index had filled and grown
    /// on the shard meanwhile, so the build was wasted).
    pub fn record_index_build(&self, installed: bool) {
        let counter =
            if installed { &self.index_builds_installed } else { &self.index_builds_late };
        counter.fetch_add(1, Relaxed);
    }

    /// Chunks the shard copied on write while a state pass held them: what the next image's
    /// reserve is sized from.
    pub fn record_copies(&self, chunks: u64) {
        self.copied_chunks.fetch_add(chunks, Relaxed);
    }

    /// An image taken before the chunk stocks' reserve for its copies was in.
    pub fn record_reserve_late(&self) {
        self.reserves_late.fetch_add(1, Relaxed);
    }

    /// A background state pass (hash, and snapshot when one was due), start to finish.
    pub fn record_pass(&self, micros: u64) {
        observe(&PASS_BUCKETS_US, &self.pass_us_buckets, &self.pass_us_sum, micros);
    }

    pub fn record_commit(&self, commands: u64, micros: u64) {
        self.commits.fetch_add(1, Relaxed);
        observe(&COMMIT_BUCKETS_US, &self.commit_us_buckets, &self.commit_us_sum, micros);
        observe(&BATCH_BUCKETS, &self.batch_buckets, &self.batch_sum, commands);
    }

    /// A client batch's time in the server: from its frame decoded to its acknowledgement
    /// written to the socket (queue, shard, journal and session included).
    pub fn record_batch_latency(&self, micros: u64) {
        observe(
            &SYNC_BUCKETS_US,
            &self.batch_latency_us_buckets,
            &self.batch_latency_us_sum,
            micros,
        );
    }

    /// Client batches from decoded to acknowledged (`keel_batch_latency_seconds`).
    pub fn batch_latency(&self) -> Buckets {
        Buckets::read(&SYNC_BUCKETS_US, &self.batch_latency_us_buckets)
    }

    /// Shard batches from staging to durable (`keel_commit_latency_seconds`).
    pub fn commit_latency(&self) -> Buckets {
        Buckets::read(&COMMIT_BUCKETS_US, &self.commit_us_buckets)
    }

    /// Group commits' write and sync (`keel_journal_sync_seconds`).
    pub fn journal_sync(&self) -> Buckets {
        Buckets::read(&SYNC_BUCKETS_US, &self.sync_us_buckets)
    }

    /// Appends this tenant's series in Prometheus text format.
    pub fn render(&self, tenant: &str, queue_depth: usize, out: &mut String) {
        let label = format!("tenant=\"{tenant}\"");
        for (name, outcome, count) in [
            ("keel_commands_total", "accepted", &self.accepted),
            ("keel_commands_total", "duplicate", &self.duplicates),
            ("keel_commands_total", "rejected", &self.rejected),
            ("keel_report_index_builds_total", "installed", &self.index_builds_installed),
            ("keel_report_index_builds_total", "late", &self.index_builds_late),
        ] {
            let _ =
                writeln!(out, "{name}{{{label},outcome=\"{outcome}\"}} {}", count.load(Relaxed));
        }
        for (name, count) in [
            ("keel_state_pass_copied_chunks_total", &self.copied_chunks),
            ("keel_image_reserve_late_total", &self.reserves_late),
        ] {
            let _ = writeln!(out, "{name}{{{label}}} {}", count.load(Relaxed));
        }
        let _ = writeln!(out, "keel_last_sequence{{{label}}} {}", self.last_sequence());
        let _ = writeln!(out, "keel_queue_depth{{{label}}} {queue_depth}");
        histogram(
            out,
            "keel_commit_latency_seconds",
            &label,
            &COMMIT_BUCKETS_US,
            &self.commit_us_buckets,
            self.commit_us_sum.load(Relaxed),
            6,
        );
        histogram(
            out,
            "keel_batch_latency_seconds",
            &label,
            &SYNC_BUCKETS_US,
            &self.batch_latency_us_buckets,
            self.batch_latency_us_sum.load(Relaxed),
            6,
        );
        histogram(
            out,
            "keel_journal_sync_seconds",
            &label,
            &SYNC_BUCKETS_US,
            &self.sync_us_buckets,
            self.sync_us_sum.load(Relaxed),
            6,
        );
        histogram(
            out,
            "keel_engine_image_seconds",
            &label,
            &SYNC_BUCKETS_US,
            &self.image_us_buckets,
            self.image_us_sum.load(Relaxed),
            6,
        );
        histogram(
            out,
            "keel_state_pass_seconds",
            &label,
            &PASS_BUCKETS_US,
            &self.pass_us_buckets,
            self.pass_us_sum.load(Relaxed),
            6,
        );
        histogram(
            out,
            "keel_commit_batch_commands",
            &label,
            &BATCH_BUCKETS,
            &self.batch_buckets,
            self.batch_sum.load(Relaxed),
            0,
        );
    }
}

/// Counts `value` in the first bucket whose upper bound holds it (the last bucket when it is
/// above every bound) and adds it to the histogram's sum.
fn observe(bounds: &[u64], buckets: &[AtomicU64], sum: &AtomicU64, value: u64) {
    let bucket = bounds.iter().position(|bound| value <= *bound).unwrap_or(bounds.len());
    buckets[bucket].fetch_add(1, Relaxed);
    sum.fetch_add(value, Relaxed);
}

/// `value / 10^decimals` written exactly (bucket bounds are integers in a smaller unit).
fn scaled(value: u64, decimals: u32) -> String {
    if decimals == 0 {
        return value.to_string();
    }
    let unit = 10u64.pow(decimals);
    let fraction = format!("{:0width$}", value % unit, width = decimals as usize);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        (value / unit).to_string()
    } else {
        format!("{}.{fraction}", value / unit)
    }
}

fn histogram(
    out: &mut String,
    name: &str,
    label: &str,
    bounds: &[u64],
    counts: &[AtomicU64],
    sum: u64,
    decimals: u32,
) {
    let mut cumulative = 0;
    for (bound, count) in bounds.iter().zip(counts) {
        cumulative += count.load(Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{label},le=\"{}\"}} {cumulative}",
            scaled(*bound, decimals)
        );
    }
    cumulative += counts[bounds.len()].load(Relaxed);
    let _ = writeln!(out, "{name}_bucket{{{label},le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum{{{label}}} {}", scaled(sum, decimals));
    let _ = writeln!(out, "{name}_count{{{label}}} {cumulative}");
}

/// The `# HELP` and `# TYPE` lines for the series above.
pub fn render_preamble(out: &mut String) {
    for (name, kind, help) in [
        ("keel_commands_total", "counter", "Commands by outcome"),
        (
            "keel_report_index_builds_total",
            "counter",
            "Report indexes built off the shard: installed, or late (the shard grew the index itself meanwhile)",
        ),
        (
            "keel_state_pass_copied_chunks_total",
            "counter",
            "Chunks of state the shard copied on write while a state pass held them (about 8 KiB each)",
        ),
        (
            "keel_image_reserve_late_total",
            "counter",
            "Images taken before the chunks reserved for their copies were faulted in (500 ms after asking)",
        ),
        ("keel_last_sequence", "gauge", "Last durable tenant sequence"),
        ("keel_queue_depth", "gauge", "Requests waiting in the tenant's queue"),
        (
            "keel_batch_latency_seconds",
            "histogram",
            "From a client batch's frame decoded to its acknowledgement written: the server's whole share of a batch's latency",
        ),
        (
            "keel_commit_latency_seconds",
            "histogram",
            "From a batch's staging to its release: apply, journal write and sync",
        ),
        (
            "keel_journal_sync_seconds",
            "histogram",
            "The journal writer's group commits: write + sync_data",
        ),
        ("keel_commit_batch_commands", "histogram", "Commands per group commit"),
        (
            "keel_engine_image_seconds",
            "histogram",
            "The shard's pause to take a copy-on-write engine image for a state pass",
        ),
        (
            "keel_state_pass_seconds",
            "histogram",
            "Background state passes (state hash, and snapshot when due), start to finish",
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantiles_are_the_bound_they_fall_under() {
        let metrics = TenantMetrics::default();
        assert_eq!(metrics.commit_latency().quantile_at_most_us(0.5), None, "nothing recorded");
        // 90 commits of 80 us, 9 of 900 us, 1 of 3 s (above the last bound).
        for (micros, times) in [(80, 90), (900, 9), (3_000_000, 1)] {
            for _ in 0..times {
                metrics.record_commit(100, micros);
            }
        }
        let mut commits = metrics.commit_latency();
        let table = [(0.0, Some(100)), (0.5, Some(100)), (0.9, Some(100)), (0.91, Some(1_000))];
        for (quantile, expected) in table {
            assert_eq!(commits.quantile_at_most_us(quantile), expected, "q {quantile}");
        }
        assert_eq!(commits.quantile_at_most_us(0.99), Some(1_000));
        assert_eq!(commits.quantile_at_most_us(0.999), None, "above the last bound");
        commits.add(&metrics.commit_latency());
        assert_eq!((commits.total(), commits.quantile_at_most_us(0.9)), (200, Some(100)));
    }

    #[test]
    fn scaled_writes_exact_decimals() {
        let table =
            [(0, 6, "0"), (50, 6, "0.00005"), (1_000_000, 6, "1"), (1_500, 3, "1.5"), (7, 0, "7")];
        for (value, decimals, expected) in table {
            assert_eq!(scaled(value, decimals), expected, "{value} / 10^{decimals}");
        }
    }

    /// Histograms are cumulative, end with +Inf, and carry sum and count; a value above the
    /// last bound lands in +Inf only.
    #[test]
    fn renders_cumulative_histograms_for_commits_and_syncs() {
        let metrics = TenantMetrics::default();
        metrics.record_commit(1_000, 80);
        metrics.record_commit(10, 900);
        for micros in [40, 300, 2_000_000] {
            metrics.record_sync(micros);
        }
        metrics.accepted.fetch_add(1_010, Relaxed);
        metrics.record_image(700);
        metrics.record_pass(3_500_000);
        metrics.record_index_build(true);
        metrics.record_index_build(true);
        metrics.record_index_build(false);
        metrics.record_copies(20_000);
        metrics.record_copies(7_000);
        metrics.record_reserve_late();
        let mut out = String::new();
        render_preamble(&mut out);
        metrics.render("t1", 3, &mut out);
        for line in [
            "# TYPE keel_journal_sync_seconds histogram",
            "keel_commands_total{tenant=\"t1\",outcome=\"accepted\"} 1010",
            "keel_queue_depth{tenant=\"t1\"} 3",
            "keel_commit_latency_seconds_bucket{tenant=\"t1\",le=\"0.0001\"} 1",
            "keel_commit_latency_seconds_bucket{tenant=\"t1\",le=\"0.001\"} 2",
            "keel_commit_latency_seconds_count{tenant=\"t1\"} 2",
            "keel_journal_sync_seconds_bucket{tenant=\"t1\",le=\"0.00005\"} 1",
            "keel_journal_sync_seconds_bucket{tenant=\"t1\",le=\"0.0003\"} 2",
            "keel_journal_sync_seconds_bucket{tenant=\"t1\",le=\"1\"} 2",
            "keel_journal_sync_seconds_bucket{tenant=\"t1\",le=\"+Inf\"} 3",
            "keel_journal_sync_seconds_sum{tenant=\"t1\"} 2.00034",
            "keel_commit_batch_commands_sum{tenant=\"t1\"} 1010",
            "keel_engine_image_seconds_bucket{tenant=\"t1\",le=\"0.0005\"} 0",
            "keel_engine_image_seconds_bucket{tenant=\"t1\",le=\"0.00075\"} 1",
            "keel_state_pass_seconds_bucket{tenant=\"t1\",le=\"2.5\"} 0",
            "keel_state_pass_seconds_bucket{tenant=\"t1\",le=\"5\"} 1",
            "keel_state_pass_seconds_sum{tenant=\"t1\"} 3.5",
            "# TYPE keel_state_pass_seconds histogram",
            "keel_report_index_builds_total{tenant=\"t1\",outcome=\"installed\"} 2",
            "keel_report_index_builds_total{tenant=\"t1\",outcome=\"late\"} 1",
            "# TYPE keel_report_index_builds_total counter",
            "keel_state_pass_copied_chunks_total{tenant=\"t1\"} 27000",
            "# TYPE keel_state_pass_copied_chunks_total counter",
            "keel_image_reserve_late_total{tenant=\"t1\"} 1",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in:\n{out}");
        }
    }
}
