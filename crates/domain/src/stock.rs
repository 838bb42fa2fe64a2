//! Chunk buffers faulted in ahead of time, off the thread that fills them.
//!
//! A tenant's state grows with every trade: new `CowVec` chunks for trade records, report
//! records and large positions' bookings (about 140 bytes of fresh memory a command), and a
//! chunk copied on its first write after an image. Fresh memory is what this class of machine
//! charges most for: the first write to each page is a fault, and in a VM often a host fault
//! behind it (2.8 us a 4 KiB page on the benchmark VM, 1.4 GB/s). In a profile of the shard in
//! the two-tenant closed loop that was 12.5% of its samples in `clear_page_erms` alone, on the
//! one thread per tenant that everything waits for.
//!
//! A [`Stocks`] moves that cost to a helper: the shard takes its new chunks from a stock of
//! empty buffers of full chunk capacity whose pages a helper thread has already written (and
//! so faulted in), and the helper tops the stock up when it runs low. It changes where memory
//! comes from, never what is stored: a chunk from the stock is an empty `Vec` like a fresh
//! one, and when a stock is empty (or none is installed on the thread) a chunk is allocated
//! as before.
//!
//! A stock per element type is made the first time the thread pushes into a new chunk of that
//! type, from the element it is about to store (a sample to write the buffers with: every
//! element type in a `CowVec` is `Clone`); a copy-on-write copy takes from an existing stock
//! but never makes one. Each holds at most [`STOCK_BYTES`] of buffers, and only once that
//! type's first chunk was taken: a tenant that trades nothing holds nothing.
//!
//! Copies come in bursts. Right after an image, every write to a chunk the image still holds
//! copies it; with corrections spread over a large day, that is nearly every amend or cancel,
//! two chunks each (the trade record's and its position entry's): about 160 MB for the image
//! at 2M trades in `keel load` at 460k trades a second, most of it in the first few hundred
//! milliseconds. Faulting that in on the shard saturated it for a tenth of a second and more
//! per image, far more than the stock's 1 MiB covers. So the stocks count the copies each
//! image caused ([`Stocks::image_taken`] to [`Stocks::pass_done`]), and before the next image
//! the helper faults in a reserve for them on top of the usual stock (`RESERVE_GROWTH` times as
//! many buffers, up to [`RESERVE_BYTES`] a type and to the chunks of that type there are:
//! [`Stocks::reserve_for_image`]); the store asks for it a quarter of an interval ahead and
//! takes the image once it is in. What the copies leave unused is taken by the chunks of new
//! trades afterwards: memory that was always going to be used, faulted in earlier (a tenant
//! that stops trading right after a pass holds it until its next trades). A tenant whose
//! corrections follow their trades, or that books new trades only, copies next to nothing
//! and reserves nothing.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// What a stock of one element type holds at most: 1 MiB of buffers (for trade records, 204
/// chunks of 64: 13 ms of trades at a million a second). It is topped up when half is used.
pub const STOCK_BYTES: usize = 1 << 20;

/// The most a stock reserves for an image's copies on top of `STOCK_BYTES`: 64 MiB. With one
/// trade in five a correction spread over millions of trades, the image at 3.6M trades in
/// `keel load` at 460k/s copied 25,000 trade-record chunks (125 MB) and 7,600 entry chunks
/// (60 MB) during its pass, most of them in its first few hundred milliseconds; the reserve
/// covers that start, and the helper tops the stock up to it for the rest of the pass. 128 MiB
/// held 100 MB more at the peak for no clear gain (docs/benchmarks.md, seventeenth session).
/// Never more than the chunks of that type the stock has handed out: an image cannot copy more
/// chunks than there are.
pub const RESERVE_BYTES: usize = 64 << 20;

/// The reserve for an image is this many times the last image's copies (up to
/// `RESERVE_BYTES`). Images are spaced geometrically, each on a state at least twice the last,
/// and a larger state's pass takes longer while the corrections go on at the same rate, so the
/// copies grow much faster than the state: 170 to 500 trade-record chunks for the image at 1M
/// trades in `keel load` at 460k/s, 20,000 for the one at 2M. 16 left the second image short
/// (3,900 chunks reserved).
const RESERVE_GROWTH: usize = 64;

/// The stocks of one thread's chunks (one tenant's shard), shared with the helper that fills
/// them. See the module documentation.
#[derive(Debug, Default)]
pub struct Stocks {
    /// Every stock made so far, for the helper.
    stocks: Mutex<Vec<Arc<dyn Restock>>>,
    /// Set when a stock fell under half; cleared by the helper as it starts a round.
    wanted: AtomicBool,
    /// Set when a stock fell under a quarter of its usual size: the helper must hurry
    /// (`take_urgent`).
    urgent: AtomicBool,
    closed: AtomicBool,
    /// The helper, woken when a stock runs low.
    helper: OnceLock<std::thread::Thread>,
    /// Chunks taken from an empty stock (allocated, and faulted in, by the taking thread)
    /// since the last `take_empty_takes`.
    empty_takes: AtomicUsize,
}

impl Stocks {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The thread that fills the stocks (`restock`), woken when one runs low.
    pub fn set_helper(&self, helper: std::thread::Thread) {
        let _ = self.helper.set(helper);
    }

    /// Tops every stock up to its size; returns how many buffers it made. For the helper:
    /// each buffer is written whole, which is what faults its pages in.
    pub fn restock(&self) -> usize {
        self.restock_with(&mut || {})
    }

    /// As `restock`, calling `between` after each buffer (a few KiB to a few hundred KiB:
    /// microseconds to a few hundred microseconds of faults): for a helper that gives way
    /// (`keel_sched::GiveWay`). Each buffer is in the stock as soon as it is made.
    pub fn restock_with(&self, between: &mut dyn FnMut()) -> usize {
        self.wanted.store(false, Ordering::Release);
        let stocks: Vec<_> = lock(&self.stocks).clone();
        stocks.iter().map(|stock| stock.restock(between)).sum()
    }

    /// Whether a stock ran low since the last `restock`.
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Acquire)
    }

    /// Before an image: raises each stock for the copies it may cause (`RESERVE_GROWTH` times
    /// the last image's, up to `RESERVE_BYTES` a type and to the chunks there are), has the
    /// helper fault them in, and says whether they are in. Called again until it says so (the
    /// raise happens once an image); a stock that copied nothing reserves nothing, so with no
    /// history this is ready at once.
    pub fn reserve_for_image(&self) -> bool {
        let mut ready = true;
        let mut raised = false;
        for stock in lock(&self.stocks).iter() {
            raised |= stock.reserve();
            ready &= stock.reserve_in();
        }
        if raised {
            self.low();
        }
        ready
    }

    /// An image was taken: counts the copies its writes cause from now on.
    pub fn image_taken(&self) {
        lock(&self.stocks).iter().for_each(|stock| stock.count_copies());
    }

    /// The image's pass is over: each stock goes back to its usual size, and remembers the
    /// copies counted since `image_taken` for the next `reserve_for_image`. Returns them
    /// (element type, copies), for the log.
    pub fn pass_done(&self) -> Vec<(&'static str, usize)> {
        lock(&self.stocks).iter().map(|stock| (stock.name(), stock.settle())).collect()
    }

    /// Tells the helper to stop (the shard has ended), and wakes it.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Buffers held now, over every stock.
    pub fn buffers(&self) -> usize {
        lock(&self.stocks).iter().map(|stock| stock.held()).sum()
    }

    fn wake(&self) {
        if let Some(helper) = self.helper.get() {
            helper.unpark();
        }
    }

    fn low(&self) {
        if !self.wanted.swap(true, Ordering::AcqRel) {
            self.wake();
        }
    }

    /// Whether a stock fell under a quarter of its usual size since the last call: a helper
    /// that works on spare CPU only should hurry (`keel_sched::hurry`) until the round ends.
    pub fn take_urgent(&self) -> bool {
        self.urgent.swap(false, Ordering::AcqRel)
    }

    /// Chunks taken from an empty stock since the last call: each was faulted in by the
    /// shard itself (for the log: how far the helper fell behind).
    pub fn take_empty_takes(&self) -> usize {
        self.empty_takes.swap(0, Ordering::Relaxed)
    }

    fn running_out(&self) {
        self.urgent.store(true, Ordering::Release);
        self.low();
    }
}

/// Makes `stocks` where this thread's new `CowVec` chunks come from, until the guard is
/// dropped (which puts back whatever was installed before: installs nest).
pub fn install(stocks: Arc<Stocks>) -> Installed {
    let previous = LOCAL.with(|local| local.replace(Some(Local { stocks, typed: Vec::new() })));
    Installed { previous, _thread: std::marker::PhantomData }
}

/// The stocks installed on this thread, if any.
pub fn installed() -> Option<Arc<Stocks>> {
    LOCAL.with(|local| local.borrow().as_ref().map(|local| local.stocks.clone()))
}

/// This thread's stocks while it lives (see [`install`]). Not `Send`: it belongs to the
/// thread it was installed on.
#[must_use = "the stocks are uninstalled when this guard is dropped"]
pub struct Installed {
    previous: Option<Local>,
    _thread: std::marker::PhantomData<*const ()>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let previous = self.previous.take();
        LOCAL.with(|local| *local.borrow_mut() = previous);
    }
}

impl std::fmt::Debug for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installed").finish_non_exhaustive()
    }
}

/// An empty buffer for a chunk of `capacity` elements like `sample`: from this thread's stock
/// if it has one with a buffer left, else a new allocation. The first call for a type makes
/// its stock, with `sample` (an element being pushed) to write the buffers with.
pub(crate) fn chunk<T: Clone + Send + 'static>(capacity: usize, sample: &T) -> Vec<T> {
    take(capacity, Some(sample))
}

/// `chunk` for a copy of an existing chunk: from the type's stock if one was made, but never
/// making one. (Its sample would be whatever element the copied chunk starts with, kept for
/// the stock's life: a large position would pin its bookings. A pushed element is a new one,
/// a new position being empty.)
pub(crate) fn chunk_if_stocked<T: Clone + Send + 'static>(capacity: usize) -> Vec<T> {
    take::<T>(capacity, None)
}

fn take<T: Clone + Send + 'static>(capacity: usize, sample: Option<&T>) -> Vec<T> {
    let taken = LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        let local = local.as_mut()?;
        let stock = local.stock::<T>(capacity, sample)?;
        let (buffer, left) = stock.take();
        let counter = if sample.is_none() { &stock.copies } else { &stock.chunks };
        counter.fetch_add(1, Ordering::Relaxed);
        let depth = stock.depth;
        let low = left < stock.target() / 2;
        if buffer.is_none() {
            local.stocks.empty_takes.fetch_add(1, Ordering::Relaxed);
        }
        if left < depth / 4 {
            local.stocks.running_out();
        } else if low {
            local.stocks.low();
        }
        buffer
    });
    taken.unwrap_or_else(|| Vec::with_capacity(capacity))
}

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// A thread's handle on its stocks, with each typed stock found by its element type.
struct Local {
    stocks: Arc<Stocks>,
    typed: Vec<(TypeId, Arc<dyn Any + Send + Sync>)>,
}

impl Local {
    /// The stock of `T`, made with `sample` if there is none yet (none without a sample).
    fn stock<T: Clone + Send + 'static>(
        &mut self,
        capacity: usize,
        sample: Option<&T>,
    ) -> Option<&Stock<T>> {
        let id = TypeId::of::<T>();
        let at = match self.typed.iter().position(|(typed, _)| *typed == id) {
            Some(at) => at,
            None => {
                let stock = Arc::new(Stock::new(capacity, sample?.clone()));
                lock(&self.stocks.stocks).push(stock.clone());
                self.typed.push((id, stock));
                self.typed.len() - 1
            }
        };
        match self.typed[at].1.downcast_ref::<Stock<T>>() {
            Some(stock) => Some(stock),
            None => unreachable!("invariant: stocks are filed under their element type"),
        }
    }
}

/// Empty buffers of one element type.
struct Stock<T> {
    held: Mutex<Held<T>>,
    capacity: usize,
    /// Buffers it holds at most between images: `STOCK_BYTES`.
    depth: usize,
    /// Buffers the helper fills it to: `depth`, plus the reserve while an image is due or its
    /// pass runs.
    target: AtomicUsize,
    /// Copy-on-write copies taken from it since counting started (`image_taken`).
    copies: AtomicUsize,
    /// Copies the last image caused: the next reserve.
    last_copies: AtomicUsize,
    /// New chunks handed out (stocked or not): the chunks of this type there are, as far as
    /// this stock knows, and so the most an image can copy.
    chunks: AtomicUsize,
    /// Whether the coming image's reserve was raised already.
    reserved: AtomicBool,
}

struct Held<T> {
    buffers: Vec<Vec<T>>,
    sample: T,
}

impl<T: Clone> Stock<T> {
    fn new(capacity: usize, sample: T) -> Self {
        let bytes = capacity.max(1) * std::mem::size_of::<T>().max(1);
        let depth = (STOCK_BYTES / bytes).max(2);
        Self {
            held: Mutex::new(Held { buffers: Vec::new(), sample }),
            capacity,
            depth,
            target: AtomicUsize::new(depth),
            copies: AtomicUsize::new(0),
            last_copies: AtomicUsize::new(0),
            chunks: AtomicUsize::new(0),
            reserved: AtomicBool::new(false),
        }
    }

    fn target(&self) -> usize {
        self.target.load(Ordering::Relaxed)
    }

    /// A buffer if one is left, and how many are left after it.
    fn take(&self) -> (Option<Vec<T>>, usize) {
        let mut held = lock(&self.held);
        let buffer = held.buffers.pop();
        (buffer, held.buffers.len())
    }
}

/// A stock as the helper sees it, whatever its element type.
trait Restock: Send + Sync {
    /// Tops the stock up, calling `between` after each buffer; returns how many it made.
    fn restock(&self, between: &mut dyn FnMut()) -> usize;
    fn held(&self) -> usize;
    /// Raises the target for the coming image's copies, once an image; true if it did.
    fn reserve(&self) -> bool;
    /// Whether a raised target is met, but for half the usual stock (which the shard's new
    /// chunks may have taken meanwhile).
    fn reserve_in(&self) -> bool;
    /// Counts copies from zero.
    fn count_copies(&self);
    /// Back to `depth`; returns the copies counted, kept for the next reserve.
    fn settle(&self) -> usize;
    /// The element type.
    fn name(&self) -> &'static str;
}

impl<T: Clone + Send> Restock for Stock<T> {
    fn restock(&self, between: &mut dyn FnMut()) -> usize {
        let (missing, sample) = {
            let held = lock(&self.held);
            (self.target().saturating_sub(held.buffers.len()), held.sample.clone())
        };
        for _ in 0..missing {
            // Made without the lock, so that the shard's takes never wait for a page fault.
            let mut buffer = Vec::with_capacity(self.capacity);
            buffer.resize(self.capacity, sample.clone());
            buffer.clear();
            lock(&self.held).buffers.push(buffer);
            between();
        }
        missing
    }

    fn held(&self) -> usize {
        lock(&self.held).buffers.len()
    }

    fn reserve(&self) -> bool {
        if self.reserved.swap(true, Ordering::Relaxed) {
            return false;
        }
        let bytes = self.capacity.max(1) * std::mem::size_of::<T>().max(1);
        let copies = self.last_copies.load(Ordering::Relaxed);
        let chunks = self.chunks.load(Ordering::Relaxed);
        let extra = copies.saturating_mul(RESERVE_GROWTH).min(RESERVE_BYTES / bytes).min(chunks);
        self.target.store(self.depth + extra, Ordering::Relaxed);
        extra > 0
    }

    fn reserve_in(&self) -> bool {
        let target = self.target();
        target == self.depth || self.held() >= target - self.depth / 2
    }

    fn count_copies(&self) {
        self.copies.store(0, Ordering::Relaxed);
    }

    fn settle(&self) -> usize {
        let copies = self.copies.swap(0, Ordering::Relaxed);
        self.last_copies.store(copies, Ordering::Relaxed);
        self.target.store(self.depth, Ordering::Relaxed);
        self.reserved.store(false, Ordering::Relaxed);
        copies
    }

    fn name(&self) -> &'static str {
        std::any::type_name::<T>()
    }
}

impl std::fmt::Debug for dyn Restock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stock({} held)", self.held())
    }
}

/// A poisoned lock only means a panic elsewhere while it was held; buffers are plain values.
fn lock<X>(mutex: &Mutex<X>) -> std::sync::MutexGuard<'_, X> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CowVec;

    #[test]
    fn chunks_come_from_the_stock_once_installed_and_restocked() {
        let stocks = Stocks::new();
        let installed = install(stocks.clone());
        // The first chunk of a type makes its stock (empty) and asks for a restock.
        let mut cow: CowVec<u64> = CowVec::new();
        cow.push(7);
        assert!(stocks.wanted());
        // The helper is called back after each buffer, which is in the stock by then.
        let mut seen = Vec::new();
        let made = stocks.restock_with(&mut || seen.push(stocks.buffers()));
        let depth = STOCK_BYTES / (CowVec::<u64>::chunk_len() * 8);
        assert_eq!(made, depth);
        assert_eq!(seen, (1..=depth).collect::<Vec<_>>());
        assert!(!stocks.wanted());
        assert_eq!(stocks.buffers(), depth);
        // Each further chunk takes a buffer; under half, the helper is asked again.
        for value in 1..(CowVec::<u64>::chunk_len() * (depth / 2 + 1)) as u64 {
            cow.push(value);
        }
        assert_eq!(stocks.buffers(), depth / 2, "one chunk allocated, then half the stock");
        assert!(!stocks.wanted(), "half left is not low yet");
        cow.extend(0..CowVec::<u64>::chunk_len() as u64);
        assert_eq!(stocks.buffers(), depth / 2 - 1);
        assert!(stocks.wanted());
        // What is stored is what was pushed, whatever the buffers were written with.
        assert_eq!(cow[0], 7);
        let chunk = CowVec::<u64>::chunk_len();
        assert!(cow
            .iter()
            .skip(1)
            .take(chunk * (depth / 2 + 1) - 1)
            .zip(1..)
            .all(|(&got, want)| got == want));
        drop(installed);
        let before = stocks.buffers();
        for value in 0..CowVec::<u64>::chunk_len() as u64 {
            cow.push(value);
        }
        assert_eq!(stocks.buffers(), before, "uninstalled: chunks are allocated again");
    }

    /// Under half the helper is asked for a round; under a quarter of the usual size it is
    /// also told to hurry, once.
    #[test]
    fn a_stock_under_a_quarter_is_urgent() {
        let stocks = Stocks::new();
        let _installed = install(stocks.clone());
        let chunk = CowVec::<u64>::chunk_len();
        let depth = STOCK_BYTES / (chunk * 8);
        let mut cow: CowVec<u64> = CowVec::new();
        cow.push(0);
        assert!(stocks.take_urgent(), "the first chunk found its stock empty");
        assert_eq!(stocks.take_empty_takes(), 1, "and was counted");
        stocks.restock();
        assert!(!stocks.take_urgent());
        let mut value = 1_u64;
        // (buffers left after the pushes, wanted, urgent)
        let cases = [
            (depth / 2 + 1, false, false),
            (depth / 2 - 1, true, false),
            (depth / 4 - 1, true, true),
        ];
        for (left, wanted, urgent) in cases {
            while stocks.buffers() > left {
                cow.push(value);
                value += 1;
            }
            assert_eq!(stocks.wanted(), wanted, "{left} left");
            assert_eq!(stocks.take_urgent(), urgent, "{left} left");
        }
        assert!(!stocks.take_urgent(), "told once");
        assert_eq!(stocks.take_empty_takes(), 0, "every chunk since came from the stock");
    }

    #[test]
    fn an_empty_stock_allocates_and_stocks_are_per_type() {
        let stocks = Stocks::new();
        let _installed = install(stocks.clone());
        let mut small: CowVec<u16> = CowVec::new();
        let mut large: CowVec<[u64; 4]> = CowVec::new();
        for value in 0..(3 * CowVec::<u16>::chunk_len()) as u16 {
            small.push(value);
        }
        for value in 0..(3 * CowVec::<[u64; 4]>::chunk_len()) as u64 {
            large.push([value; 4]);
        }
        assert_eq!(lock(&stocks.stocks).len(), 2);
        assert_eq!(stocks.buffers(), 0, "nothing restocked: every chunk was allocated");
        assert!(small.iter().zip(0..).all(|(&got, want)| got == want));
        assert!(large.iter().zip(0..).all(|(got, want)| *got == [want; 4]));
        stocks.restock();
        // A copy-on-write copy takes its buffer from the stock too.
        let before = stocks.buffers();
        let copy = small.share();
        small[0] = 99;
        assert_eq!(stocks.buffers(), before - 1);
        assert_eq!((copy[0], small[0]), (0, 99));
    }

    #[test]
    fn a_copy_takes_from_a_stock_but_never_makes_one() {
        // Built before the install: no stock of its type yet.
        let mut cow: CowVec<u64> = (0..CowVec::<u64>::chunk_len() as u64 * 2).collect();
        let stocks = Stocks::new();
        let _installed = install(stocks.clone());
        let copy = cow.share();
        cow[0] = 5;
        assert_eq!(lock(&stocks.stocks).len(), 0, "the copy allocated, no stock made");
        assert_eq!((copy[0], cow[0]), (0, 5));
    }

    /// The copies an image causes (counted from `image_taken` to `pass_done`) size the reserve
    /// for the next one: `RESERVE_GROWTH` times as many buffers, up to `RESERVE_BYTES` and to
    /// the chunks there are, on top of the usual stock, asked for once an image; back to the
    /// usual size after its pass. A type that copied nothing reserves nothing and is ready at
    /// once.
    #[test]
    fn an_image_reserves_buffers_for_as_many_copies_as_the_last_one_caused() {
        let chunk = CowVec::<u64>::chunk_len();
        let depth = STOCK_BYTES / (chunk * 8);
        let cap = RESERVE_BYTES / (chunk * 8);
        // (chunks in the arena, chunks written after the first image, reserve for the second)
        let cases = [
            (1024, 0, 0),
            (1024, 1, RESERVE_GROWTH),
            (1024, 3, 3 * RESERVE_GROWTH),
            (1024, 1024 / RESERVE_GROWTH + 1, 1024),
            (cap + 1, cap / RESERVE_GROWTH + 1, cap),
        ];
        for (chunks, written, reserve) in cases {
            let stocks = Stocks::new();
            let _installed = install(stocks.clone());
            let mut cow: CowVec<u64> = (0..(chunk * chunks) as u64).collect();
            // Copies before an image are not counted.
            let early = cow.share();
            cow[0] = 1;
            drop(early);
            stocks.restock();
            assert!(stocks.reserve_for_image(), "no copies counted yet: nothing to reserve");
            assert_eq!(stocks.restock(), 0, "nor to make");
            let image = cow.share();
            stocks.image_taken();
            for at in 0..written {
                cow[at * chunk] += 1;
                cow[at * chunk + 1] += 1; // the same chunk: copied once
            }
            drop(image);
            let copies = stocks.pass_done();
            assert_eq!(copies, vec![(std::any::type_name::<u64>(), written)]);
            stocks.restock();
            let held = stocks.buffers();
            assert_eq!(held, depth, "back to the usual size after the pass");
            // In at once if the usual stock covers it, with half of it to spare.
            assert_eq!(stocks.reserve_for_image(), reserve <= depth / 2, "{written} copies");
            assert_eq!(stocks.wanted(), reserve > 0, "the helper is asked for a reserve");
            assert_eq!(stocks.restock(), reserve, "{written} copies");
            assert!(stocks.reserve_for_image(), "in once made");
            assert_eq!(stocks.buffers(), depth + reserve);
            // Asked for once an image: taking from it does not raise it again.
            assert!(!stocks.wanted());
            stocks.reserve_for_image();
            assert!(!stocks.wanted());
            let image = cow.share();
            stocks.image_taken();
            cow[0] += 1;
            assert_eq!(stocks.buffers(), depth + reserve - 1, "a copy takes from the reserve");
            drop(image);
            stocks.pass_done();
            // What the copies left of a reserve is kept for new chunks, and not topped up.
            assert_eq!(stocks.restock(), usize::from(reserve == 0));
            assert_eq!(stocks.buffers(), depth.max(depth + reserve - 1));
        }
    }

    #[test]
    fn installs_nest() {
        let (outer, inner) = (Stocks::new(), Stocks::new());
        let mut cow: CowVec<u32> = CowVec::new();
        let _outer = install(outer.clone());
        {
            let _inner = install(inner.clone());
            cow.push(1);
        }
        cow.extend(0..CowVec::<u32>::chunk_len() as u32);
        assert_eq!(lock(&inner.stocks).len(), 1, "the first chunk, under the inner install");
        assert_eq!(lock(&outer.stocks).len(), 1, "the second, under the outer one again");
    }
}
