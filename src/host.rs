//! What the host took from this machine: the steal time of a virtual machine's CPUs.
//!
//! On a VM, a vCPU that should be running may be held back while the hypervisor runs something
//! else; the guest kernel counts that time as *steal* (the eighth figure of `/proc/stat`'s `cpu`
//! line). Nothing in the guest can make up for it, so a latency figure means little without it:
//! on the 2-core benchmark machine a 10 s open-loop run lost anywhere from 0 to 1.7 s of CPU,
//! in bursts of 5 to 35 ms (docs/benchmarks.md, nineteenth session). `keel load` reports it beside
//! its latencies.

use std::time::Duration;

/// `/proc/stat` counts in `USER_HZ` ticks, 100 a second on every architecture Linux gives
/// userspace (the kernel converts from its own `HZ`).
const USER_HZ: u64 = 100;

/// The steal time of all CPUs together since boot; `None` where there is no `/proc/stat` (not
/// Linux) or it has no steal figure (kernels before 2.6.11).
pub fn steal_so_far() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    steal_ticks(&stat).map(|ticks| Duration::from_millis(ticks * 1_000 / USER_HZ))
}

/// The steal figure, in ticks, of the `cpu` line (all CPUs) of `/proc/stat`'s text.
fn steal_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|line| line.split_whitespace().next() == Some("cpu"))?;
    // cpu user nice system idle iowait irq softirq steal guest guest_nice
    line.split_whitespace().nth(8)?.parse().ok()
}

/// This machine's CPUs: what a steal time is a share of.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steal_figure_is_the_eighth_of_the_cpu_line() {
        let cases: &[(&str, Option<u64>)] = &[
            (
                "cpu  1363505 0 417182 11303206 80062 0 36936 1816 0 0\n\
                 cpu0 681752 0 208591 5651603 40031 0 18468 908 0 0\n",
                Some(1816),
            ),
            // The per-CPU lines are not the total, wherever the total is.
            ("cpu0 1 2 3 4 5 6 7 70 0 0\ncpu  1 2 3 4 5 6 7 8 0 0\n", Some(8)),
            // A kernel with no steal column.
            ("cpu  1 2 3 4 5 6 7\n", None),
            ("cpu  1 2 3 4 5 6 7 x 0 0\n", None),
            ("intr 12345\n", None),
            ("", None),
        ];
        for (stat, expected) in cases {
            assert_eq!(steal_ticks(stat), *expected, "{stat:?}");
        }
    }

    #[test]
    fn this_machine_has_a_steal_figure_that_does_not_go_back() {
        if !std::path::Path::new("/proc/stat").exists() {
            return;
        }
        let first = steal_so_far().expect("a steal figure in /proc/stat");
        let second = steal_so_far().expect("a steal figure in /proc/stat");
        assert!(second >= first);
    }
}
