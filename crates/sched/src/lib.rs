//! The scheduling class each of keel's threads runs in.
//!
//! An acknowledgement is handed between threads four times: from the session's runtime worker
//! to the tenant's shard, to its journal writer, back to the shard and back to the session.
//! Each hand-off wakes a thread. On a
//! small machine under the normal (fair) scheduler a woken thread often waits for whatever runs
//! on its core to use up its slice, which the kernel checks only at its timer tick (4 ms at
//! HZ=250): those waits were most of the open loop's p99 (docs/benchmarks.md). A thread in the
//! real-time class `SCHED_FIFO` instead preempts any normal thread the moment it wakes.
//!
//! So the process picks, once at start ([`configure`]), whether the latency path runs real-time,
//! and every thread says at its start which [`Role`] it has ([`enter`]):
//!
//! - [`Role::Latency`]: runtime workers (on their first unpark, so that the runtime's blocking
//!   threads, which would not yield a core to a shard of the same priority, stay normal),
//!   shards, journal writers, `keel load`'s pacer. `SCHED_FIFO` at the configured priority, or
//!   left as they are when none is configured (the default).
//! - [`Role::Helper`]: work that must finish in good time but not ahead of the latency path
//!   (topping up the chunk stock, building the next report index). Always the normal
//!   class: a helper started by a real-time thread would otherwise inherit its class.
//! - [`Role::Background`]: state hashes and snapshots. `SCHED_IDLE`, so that any thread that
//!   wakes takes their core at once.
//! - [`Role::Spare`]: work with a deadline that should take only spare CPU until it must hurry
//!   (report index builds). `SCHED_IDLE` until [`hurry`], then the normal class; the normal
//!   class throughout where the kernel would not let it back out of the idle one. With the
//!   latency path real-time: the normal class until [`hurry`], then [`Role::Writer`]'s.
//! - [`Role::Writer`]: threads that write files on the journal's disk beside it (preparing the
//!   next journal segment), and any thread while inside [`writing`] (a snapshot's writes and
//!   syncs). One real-time priority below the latency path when it is real-time, the normal
//!   class otherwise. A file system's writer holds its locks and buffers (block bitmaps, inode
//!   tables) inside `write` and `fdatasync`; preempted there by a busy latency path, it made
//!   the journal writer's own syncs wait for it: the disk's open-loop p99 at 324k/s was 8 to
//!   18 ms with the writers in the normal and idle classes, 1.2 to 1.7 ms in this one
//!   (docs/benchmarks.md, fifteenth session). Its CPU time is small (direct writes, a block's
//!   copy into the page cache), so the class costs the latency path nothing it would notice.
//!
//! None of these threads spins: each blocks on a queue, a condition or the disk, so a real-time
//! class cannot starve the machine, and the kernel's real-time throttling
//! (`/proc/sys/kernel/sched_rt_runtime_us`, 95% by default) keeps a share for everyone else even
//! if one did. A real-time class needs `CAP_SYS_NICE` (or root, or an `RLIMIT_RTPRIO` at least
//! the priority): [`configure`] checks that it can be had and says so when it cannot.

use std::sync::atomic::{AtomicU8, Ordering};

/// What a thread does, which decides its scheduling class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// On the path of an acknowledgement: network, shard, journal writer.
    Latency,
    /// Ahead-of-time work that should not compete with the latency path (the chunk stock,
    /// report index builds).
    Helper,
    /// Long passes that may take whatever CPU is left (state hashes, snapshots).
    Background,
    /// Work with a deadline that should take only CPU nobody else wants until it must hurry
    /// (report index builds): the idle class, and the normal one after [`hurry`]. In the
    /// normal class from the start where that could not be undone (see [`can_hurry_from_idle`])
    /// or when the latency path is real-time (which preempts a normal thread at once anyway).
    Spare,
    /// File writes on the journal's disk that must not be preempted part way (segment
    /// preparation; a snapshot's writes, through [`writing`]).
    Writer,
}

/// The highest real-time priority on Linux; 1 is the lowest.
pub const PRIORITY_MAX: u8 = 99;

/// Why the real-time class cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchedError {
    #[error("real-time priority {0} is out of range: it must be 1 to {PRIORITY_MAX}")]
    OutOfRange(u8),
    #[error(
        "real-time priority {priority} was refused by the operating system ({reason}): it needs \
         CAP_SYS_NICE, root, or an RLIMIT_RTPRIO of at least {priority} (ulimit -r); or leave \
         realtime_priority unset"
    )]
    Refused { priority: u8, reason: String },
    #[error("real-time scheduling is only supported on Linux")]
    Unsupported,
}

/// 0: no real-time class (the default); otherwise the `SCHED_FIFO` priority of `Role::Latency`.
static REALTIME_PRIORITY: AtomicU8 = AtomicU8::new(0);

/// Sets, for the whole process, whether `Role::Latency` threads run in `SCHED_FIFO` at
/// `priority` (`None`: they stay in the normal class). With a priority, first checks on a
/// short-lived thread that the operating system grants it, so that a server asked to run
/// real-time refuses to start rather than silently running without it. Threads already
/// running keep their class until they call [`enter`].
pub fn configure(priority: Option<u8>) -> Result<(), SchedError> {
    let Some(priority) = priority else {
        REALTIME_PRIORITY.store(0, Ordering::Relaxed);
        return Ok(());
    };
    if !(1..=PRIORITY_MAX).contains(&priority) {
        return Err(SchedError::OutOfRange(priority));
    }
    std::thread::Builder::new()
        .name("sched-probe".into())
        .spawn(move || os::set_fifo(priority))
        .map_err(|e| SchedError::Refused { priority, reason: e.to_string() })?
        .join()
        .unwrap_or_else(|_| {
            Err(SchedError::Refused { priority, reason: "probe panicked".into() })
        })?;
    REALTIME_PRIORITY.store(priority, Ordering::Relaxed);
    Ok(())
}

/// The configured real-time priority of the latency path, if any.
pub fn realtime_priority() -> Option<u8> {
    match REALTIME_PRIORITY.load(Ordering::Relaxed) {
        0 => None,
        priority => Some(priority),
    }
}

/// Puts the calling thread in its role's class. Best effort past [`configure`]: a failure (a
/// limit lowered since) is logged and leaves the thread as it was.
pub fn enter(role: Role) {
    if let Err(error) = apply(role) {
        tracing::debug!(?role, %error, "could not set the thread's scheduling class");
    }
}

/// Puts the calling thread in `role`'s class.
fn apply(role: Role) -> Result<(), SchedError> {
    match (role, realtime_priority()) {
        (Role::Latency, Some(priority)) => os::set_fifo(priority),
        (Role::Latency, None) => Ok(()),
        (Role::Helper, _) => os::leave_realtime(),
        (Role::Background, _) => os::set_idle(),
        (Role::Spare, None) if can_hurry_from_idle() => os::set_idle(),
        (Role::Spare, _) => os::set_normal(),
        (Role::Writer, Some(priority)) => os::set_fifo(writer_priority(priority)),
        (Role::Writer, None) => os::set_normal(),
    }
}

/// Whether a thread in the idle class may go back to the normal one (`sched_setscheduler` to
/// `SCHED_OTHER` at nice 0 needs root, `CAP_SYS_NICE` or an `RLIMIT_NICE` that allows nice 0).
/// Asked once, of a short-lived thread.
pub fn can_hurry_from_idle() -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| {
        std::thread::Builder::new()
            .name("sched-probe".into())
            .spawn(|| os::set_idle().is_ok() && os::set_normal().is_ok())
            .ok()
            .and_then(|probe| probe.join().ok())
            .unwrap_or(false)
    })
}

/// A [`Role::Spare`] thread that must now finish in good time: back to the normal class from
/// the idle one; with the latency path real-time, up to [`Role::Writer`]'s class, one
/// real-time priority below it. There the normal class gets only what the real-time threads
/// leave, and near P4's rate on the disk that was a sixth of the machine, shared with the
/// chunk stock and the state pass: a report index build for 3.1M ids that hurried at three
/// quarters full came back after the index had filled, and the shard's in-line growth held
/// it up 300 ms, in three of four such runs (docs/benchmarks.md, twenty-second session). A
/// shard, journal writer or session still preempts it at once. Best effort: a refusal is
/// logged and the thread stays where it is.
pub fn hurry() {
    let Some(to) = hurried(os::current(), realtime_priority()) else { return };
    let moved = match to {
        Class::Fifo(priority) => os::set_fifo(priority),
        _ => os::set_normal(),
    };
    if let Err(error) = moved {
        tracing::debug!(%error, ?to, "a spare thread could not hurry");
    }
}

/// The class a hurrying spare thread moves to from `current`, with the latency path at
/// `latency` (none: the normal class); `None` to stay.
fn hurried(current: Class, latency: Option<u8>) -> Option<Class> {
    match (current, latency) {
        (Class::Idle | Class::Normal, Some(latency)) => Some(Class::Fifo(writer_priority(latency))),
        (Class::Idle, None) => Some(Class::Normal),
        _ => None,
    }
}

/// The real-time priority of [`Role::Writer`]: one below the latency path's, so that a shard
/// or journal writer still preempts it (the same when that is already the lowest).
fn writer_priority(latency: u8) -> u8 {
    latency.saturating_sub(1).max(1)
}

/// Runs `write` (a file write, a sync) with the calling thread in [`Role::Writer`]'s class,
/// then puts it back in the class it had: so that a background pass, which may wait long for
/// a core, is not preempted while it holds the file system's locks. A thread already at or
/// above the writer's class is left as it is. Two system calls around `write`: for steps of
/// a few hundred kilobytes, not for every small write. Where the kernel refuses the class
/// (an idle thread may not return to the normal one without an `RLIMIT_NICE` that allows
/// nice 0), the thread writes in its own class and stops asking.
pub fn writing<T>(write: impl FnOnce() -> T) -> T {
    thread_local! {
        static REFUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if REFUSED.get() {
        return write();
    }
    let before = os::current();
    let raise = match (before, realtime_priority()) {
        (Class::Fifo(current), Some(latency)) => current < writer_priority(latency),
        (Class::Fifo(_) | Class::Other, _) => false,
        (Class::Normal, None) => false,
        (Class::Idle, _) | (Class::Normal, Some(_)) => true,
    };
    if !raise {
        return write();
    }
    if let Err(error) = apply(Role::Writer) {
        REFUSED.set(true);
        tracing::debug!(%error, "file writes stay in the thread's own scheduling class");
        return write();
    }
    // Put back on the way out, also if `write` panics.
    let _restore = Restore(before);
    write()
}

/// Puts the thread back in the class it had before [`writing`].
struct Restore(Class);

impl Drop for Restore {
    fn drop(&mut self) {
        let restored = match self.0 {
            Class::Idle => os::set_idle(),
            Class::Fifo(priority) => os::set_fifo(priority),
            Class::Normal | Class::Other => os::set_normal(),
        };
        if let Err(error) = restored {
            tracing::debug!(before = ?self.0, %error, "could not restore the thread's class");
        }
    }
}

/// [`enter`], the first time this thread asks: for hooks that run often, such as a runtime
/// worker's unpark (a thread-local check after that).
pub fn enter_once(role: Role) {
    thread_local! {
        static ENTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    if !ENTERED.replace(true) {
        enter(role);
    }
}

/// The calling thread's class, as the kernel reports it: for tests and diagnostics.
pub fn current_class() -> Class {
    os::current()
}

/// How long a helper works before it gives way to a thread waiting for its core
/// ([`GiveWay`]).
pub const GIVE_WAY_EVERY: std::time::Duration = std::time::Duration::from_micros(100);

/// Lets a helper's long piece of work (faulting in a mebibyte of buffers, building an index)
/// stop every [`GIVE_WAY_EVERY`] or so for any thread waiting for its core: the helper calls
/// [`GiveWay::now`] between small pieces of its work, and once that much time has passed
/// since the last, it yields (`sched_yield`), which costs one system call when nobody waits.
///
/// The fair scheduler lets a thread that has just been picked run out its slice before a
/// thread woken on the same core may preempt it (EEVDF's run to parity): a chunk stock
/// helper that woke every 80 ms and faulted in a mebibyte or two at once held its core for 1
/// to 1.7 ms each time, and a shard, journal writer or runtime worker woken there waited all
/// of it; at 100k trades a second that was the largest single cause of the open loop's waits
/// over 0.3 ms (docs/benchmarks.md, twenty-first session). A yielding thread's deadline moves
/// a slice on, so a waiting thread that has run less is picked; one that has run more than
/// its share (a busy shard, beside a helper that rests most of the time) may not be, which is
/// why the helpers also take spare CPU only where they can ([`Role::Spare`]).
#[derive(Debug)]
pub struct GiveWay {
    every: std::time::Duration,
    since: std::time::Instant,
}

impl GiveWay {
    pub fn new() -> Self {
        Self::every(GIVE_WAY_EVERY)
    }

    pub fn every(every: std::time::Duration) -> Self {
        Self { every, since: std::time::Instant::now() }
    }

    /// Between two pieces of work: yields if `every` has passed since the last time. Returns
    /// whether it did.
    pub fn now(&mut self) -> bool {
        if self.since.elapsed() < self.every {
            return false;
        }
        std::thread::yield_now();
        self.since = std::time::Instant::now();
        true
    }
}

impl Default for GiveWay {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps a helper thread to a share of one core: the helper calls [`Duty::step`] between
/// small pieces of its work (each well under a millisecond), and once it has been busy for a
/// slice, `step` sleeps long enough that busy time stays `percent` of the elapsed time.
///
/// The fair scheduler gives a runnable helper the same share of a core as the shard it
/// shares the core with: a report index build, a full core for a second at 24M report ids,
/// left the shard waiting on the run queue half of every 100 ms and the open loop 100 ms and
/// more behind (docs/benchmarks.md, twentieth session). A lower weight (nice 19) did not help,
/// and the idle class starves a helper that must finish in good time. Resting instead leaves
/// the core to whoever else is runnable, whatever the class, and the helper still finishes:
/// `100 / percent` times later than flat out. Busy time is wall time, so time the helper
/// spent preempted counts as busy: it rests more, never less, than its share asks.
#[derive(Debug)]
pub struct Duty {
    percent: u32,
    slice: std::time::Duration,
    busy_since: std::time::Instant,
    give_way: GiveWay,
}

impl Duty {
    /// Busy for `slice` at a time, then resting so that busy time is `percent` (1 to 100) of
    /// the whole; 100 never rests.
    pub fn new(percent: u32, slice: std::time::Duration) -> Self {
        Self {
            percent: percent.clamp(1, 100),
            slice,
            busy_since: std::time::Instant::now(),
            give_way: GiveWay::new(),
        }
    }

    /// Between two pieces of work: rests if a slice of busy time is up, and otherwise gives
    /// way to a thread waiting for the core ([`GiveWay`]), flat out (100%) as well.
    pub fn step(&mut self) {
        let busy = self.busy_since.elapsed();
        if busy < self.slice || self.percent >= 100 {
            self.give_way.now();
            return;
        }
        std::thread::sleep(Self::rest_for(busy, self.percent));
        self.busy_since = std::time::Instant::now();
        self.give_way.since = self.busy_since;
    }

    /// The rest after `busy` that makes it `percent` of busy plus rest.
    fn rest_for(busy: std::time::Duration, percent: u32) -> std::time::Duration {
        busy * (100 - percent) / percent
    }
}

/// A thread's scheduling class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `SCHED_FIFO` at this priority.
    Fifo(u8),
    /// `SCHED_OTHER` (or `SCHED_BATCH`): the fair scheduler.
    Normal,
    /// `SCHED_IDLE`.
    Idle,
    /// Anything else (`SCHED_RR`, `SCHED_DEADLINE`), or not known on this platform.
    Other,
}

#[cfg(target_os = "linux")]
mod os {
    use super::{Class, SchedError};
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
        thread_schedule_policy_param, NormalThreadSchedulePolicy, RealtimeThreadSchedulePolicy,
        ThreadSchedulePolicy,
    };
    use thread_priority::{ThreadPriority, ThreadPriorityOsValue, ThreadPriorityValue};

    pub(super) fn set_fifo(priority: u8) -> Result<(), SchedError> {
        let refused = |reason: String| SchedError::Refused { priority, reason };
        let value = ThreadPriorityValue::try_from(priority).map_err(refused)?;
        set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Crossplatform(value),
            ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
        )
        .map_err(|e| refused(os_reason(e)))
    }

    /// Back to the normal class at nice 0, if the thread is real-time (inherited).
    pub(super) fn leave_realtime() -> Result<(), SchedError> {
        if !matches!(thread_schedule_policy(), Ok(ThreadSchedulePolicy::Realtime(_))) {
            return Ok(());
        }
        set_normal()
    }

    /// The normal class at nice 0, from any class.
    pub(super) fn set_normal() -> Result<(), SchedError> {
        set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Os(ThreadPriorityOsValue::default()),
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other),
        )
        .map_err(|e| SchedError::Refused { priority: 0, reason: os_reason(e) })
    }

    pub(super) fn set_idle() -> Result<(), SchedError> {
        set_thread_priority_and_policy(
            thread_native_id(),
            ThreadPriority::Min,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
        )
        .map_err(|e| SchedError::Refused { priority: 0, reason: os_reason(e) })
    }

    pub(super) fn current() -> Class {
        match thread_schedule_policy_param(thread_native_id()) {
            Ok((ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo), params)) => {
                Class::Fifo(u8::try_from(params.sched_priority).unwrap_or(0))
            }
            Ok((ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle), _)) => Class::Idle,
            Ok((ThreadSchedulePolicy::Normal(_), _)) => Class::Normal,
            _ => Class::Other,
        }
    }

    fn os_reason(error: thread_priority::Error) -> String {
        match error {
            thread_priority::Error::OS(code) => std::io::Error::from_raw_os_error(code).to_string(),
            other => other.to_string(),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    use super::{Class, SchedError};

    pub(super) fn set_fifo(_priority: u8) -> Result<(), SchedError> {
        Err(SchedError::Unsupported)
    }

    pub(super) fn leave_realtime() -> Result<(), SchedError> {
        Ok(())
    }

    pub(super) fn set_normal() -> Result<(), SchedError> {
        Ok(())
    }

    pub(super) fn set_idle() -> Result<(), SchedError> {
        Ok(())
    }

    pub(super) fn current() -> Class {
        Class::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duty_rests_in_proportion_to_its_busy_time() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        // (busy, percent, rest)
        let cases = [
            (ms(2), 50, ms(2)),
            (ms(3), 25, ms(9)),
            (ms(4), 75, Duration::from_micros(1_333)),
            (ms(2), 100, ms(0)),
            (ms(1), 1, ms(99)),
        ];
        for (busy, percent, rest) in cases {
            let got = Duty::rest_for(busy, percent);
            assert!(
                got.abs_diff(rest) < Duration::from_micros(1),
                "{busy:?} at {percent}%: {got:?}"
            );
        }
        // Clamped: 0% would never finish, so it is 1%; past 100 is 100.
        assert_eq!(Duty::new(0, ms(1)).percent, 1);
        assert_eq!(Duty::new(150, ms(1)).percent, 100);
        // Under a slice of busy time, a step does not rest.
        let mut duty = Duty::new(50, Duration::from_secs(3600));
        let started = std::time::Instant::now();
        duty.step();
        assert!(started.elapsed() < Duration::from_secs(1));
        // Past it, it rests about as long as it was busy (at 50%), and starts a new slice.
        let mut duty = Duty::new(50, ms(5));
        std::thread::sleep(ms(6));
        let resting = std::time::Instant::now();
        duty.step();
        assert!(resting.elapsed() >= ms(6), "rested {:?}", resting.elapsed());
        let started = std::time::Instant::now();
        duty.step();
        assert!(started.elapsed() < ms(5), "a new slice");
    }

    #[test]
    fn give_way_yields_once_its_time_is_up_and_starts_again() {
        use std::time::Duration;
        // (every, waited before asking, yields)
        let cases = [
            (Duration::from_secs(3600), Duration::ZERO, false),
            (Duration::ZERO, Duration::ZERO, true),
            (Duration::from_millis(2), Duration::from_millis(3), true),
        ];
        for (every, waited, yields) in cases {
            let mut give_way = GiveWay::every(every);
            std::thread::sleep(waited);
            assert_eq!(give_way.now(), yields, "every {every:?}, after {waited:?}");
        }
        // After a yield the time starts again: not again at once.
        let mut give_way = GiveWay::every(Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(60));
        assert!(give_way.now());
        assert!(!give_way.now(), "a new period");
    }

    #[test]
    fn priorities_out_of_range_are_refused_before_the_kernel_is_asked() {
        for priority in [0, 100, 255] {
            assert_eq!(configure(Some(priority)), Err(SchedError::OutOfRange(priority)));
            assert_eq!(realtime_priority(), None, "a refused priority is not kept");
        }
    }

    /// Background threads leave the fair class for the idle one; helpers started by a
    /// real-time thread leave the real-time class. Runs on fresh threads, so the test thread
    /// keeps its class. The real-time half runs only where the kernel grants it (root in CI).
    #[cfg(target_os = "linux")]
    #[test]
    fn each_role_gets_its_class() {
        let on_thread = |f: fn() -> Class| std::thread::spawn(f).join().expect("thread");
        assert_eq!(
            on_thread(|| {
                enter(Role::Background);
                current_class()
            }),
            Class::Idle
        );
        assert_eq!(
            on_thread(|| {
                enter(Role::Helper);
                current_class()
            }),
            Class::Normal,
            "a helper in the normal class stays there"
        );
        let granted = std::thread::spawn(|| os::set_fifo(3).is_ok()).join().expect("probe");
        if !granted {
            eprintln!("real-time class not granted here: skipping the real-time half");
            return;
        }
        assert_eq!(
            on_thread(|| {
                let _ = os::set_fifo(7);
                let fifo = current_class();
                enter(Role::Helper);
                assert_eq!(fifo, Class::Fifo(7));
                current_class()
            }),
            Class::Normal,
            "a helper that inherited the real-time class gives it up"
        );
    }

    /// A spare thread is idle until it hurries, then normal, where the kernel lets it leave
    /// the idle class again (root in CI); normal throughout where it does not.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_spare_thread_is_idle_until_it_hurries() {
        let seen = std::thread::spawn(|| {
            enter(Role::Spare);
            let before = current_class();
            hurry();
            (before, current_class())
        })
        .join()
        .expect("thread");
        if can_hurry_from_idle() {
            assert_eq!(seen, (Class::Idle, Class::Normal));
        } else {
            assert_eq!(seen, (Class::Normal, Class::Normal));
        }
        // Where it goes, by class and latency path: the real-time path's spare threads hurry
        // to the writers' priority, one below it.
        for (current, latency, to) in [
            (Class::Idle, None, Some(Class::Normal)),
            (Class::Normal, None, None),
            (Class::Idle, Some(10), Some(Class::Fifo(9))),
            (Class::Normal, Some(10), Some(Class::Fifo(9))),
            (Class::Normal, Some(1), Some(Class::Fifo(1))),
            (Class::Fifo(9), Some(10), None),
            (Class::Other, Some(10), None),
        ] {
            assert_eq!(hurried(current, latency), to, "{current:?} with {latency:?}");
        }
        // Hurrying a thread that is not idle changes nothing.
        let normal = std::thread::spawn(|| {
            enter(Role::Helper);
            hurry();
            current_class()
        })
        .join()
        .expect("thread");
        assert_eq!(normal, Class::Normal);
    }

    /// Inside `writing` a background thread is in the normal class (no real time configured
    /// in this test process: `configure` is process-wide and other tests run beside this one),
    /// and back in the idle class after; a normal thread is left alone.
    #[cfg(target_os = "linux")]
    #[test]
    fn writing_lifts_a_background_thread_and_puts_it_back() {
        let seen = std::thread::spawn(|| {
            enter(Role::Background);
            let inside = writing(current_class);
            (inside, current_class())
        })
        .join()
        .expect("thread");
        assert_eq!(seen, (Class::Normal, Class::Idle));
        let normal = std::thread::spawn(|| writing(current_class)).join().expect("thread");
        assert_eq!(normal, Class::Normal);
        for (latency, writer) in [(10, 9), (2, 1), (1, 1), (99, 98)] {
            assert_eq!(writer_priority(latency), writer, "below the latency path's {latency}");
        }
    }
}
