//! Buffered frame I/O shared by the server and the client: an aligned read buffer that frames
//! are validated in place from, and helpers that append frames to an aligned write buffer.
//!
//! Both buffers live as long as the connection, so the steady state allocates nothing.

use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::codec::Bytes;
use crate::frame::{self, FrameError, HEADER_LEN, Header};

/// Initial size of a connection's read buffer.
const INITIAL_READ: usize = 16 * 1024;

/// Frames whose payload is at least this large are handed over whole to the call that reads
/// them when they are alone in the read buffer ([`FrameReader::take_frame`]), not copied.
pub(crate) const TAKE_ABOVE: usize = 64 * 1024;

/// Buffers that grew beyond this for one large frame are given back once it is consumed.
pub(crate) const SHRINK_ABOVE: usize = 1 << 20;

/// Reads frames from a stream into one aligned buffer.
///
/// Invariant: `start` is a multiple of 16 (frames occupy multiples of 16 bytes and compaction
/// moves data to offset 0), so every payload sits 16-byte aligned for in-place validation.
///
/// Memory follows the bytes that arrived, never the length a header announces: the buffer
/// doubles as data fills it, up to the current frame's size. A peer that announces a 16 MiB
/// frame and sends nothing more costs [`INITIAL_READ`], not 16 MiB (zero-filled). Growth past
/// [`UNCHARGED`] is also charged to an optional [`ReadBudget`] shared by many readers (the
/// server's connections), so the bytes held for incomplete frames stay bounded overall.
pub(crate) struct FrameReader {
    buf: Bytes,
    start: usize,
    end: usize,
    max_len: u32,
    budget: Option<std::sync::Arc<ReadBudget>>,
    /// Bytes of `budget` this reader holds: what its buffer has beyond [`UNCHARGED`].
    charged: usize,
}

/// What a reader's buffer may hold without charging its [`ReadBudget`]: requests up to this
/// size are served even while others exhaust the budget (the connection limit bounds the
/// total of these).
pub(crate) const UNCHARGED: usize = 64 * 1024;

/// Bytes that read buffers may hold beyond their first [`UNCHARGED`] bytes, shared by the
/// readers of one server (`MembraneConfig::max_read_buffer_bytes`).
#[derive(Debug)]
pub(crate) struct ReadBudget {
    limit: usize,
    used: std::sync::atomic::AtomicUsize,
}

impl ReadBudget {
    pub(crate) fn new(limit: usize) -> ReadBudget {
        ReadBudget {
            limit,
            used: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    fn take(&self, bytes: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used
            .fetch_sub(bytes, std::sync::atomic::Ordering::AcqRel);
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.charge(0);
    }
}

impl FrameReader {
    pub(crate) fn new(max_len: u32) -> FrameReader {
        FrameReader::with_capacity(INITIAL_READ, max_len)
    }

    /// A reader whose buffer starts at `initial` bytes (it grows as frames need).
    pub(crate) fn with_capacity(initial: usize, max_len: u32) -> FrameReader {
        let initial = frame::padded(initial.max(frame::HEADER_LEN));
        let mut buf = Bytes::with_capacity(initial);
        buf.resize(initial, 0);
        FrameReader {
            buf,
            start: 0,
            end: 0,
            max_len,
            budget: None,
            charged: 0,
        }
    }

    /// Charges this reader's growth to `budget` from now on.
    pub(crate) fn set_budget(&mut self, budget: std::sync::Arc<ReadBudget>) {
        self.charge(0);
        self.budget = Some(budget);
        // A reader that already grew past the budget keeps its buffer uncharged (the server
        // sets the budget on a fresh, small reader, where this charges nothing).
        let _ = self.charge(self.buf.len().saturating_sub(UNCHARGED));
    }

    /// Makes this reader's charge `bytes`; `false` (and nothing changed) when the budget
    /// cannot give that much.
    fn charge(&mut self, bytes: usize) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        if bytes > self.charged {
            if !budget.take(bytes - self.charged) {
                return false;
            }
        } else {
            budget.give_back(self.charged - bytes);
        }
        self.charged = bytes;
        true
    }

    pub(crate) fn set_max_len(&mut self, max_len: u32) {
        self.max_len = max_len;
    }

    /// Grows a buffer started small (a handshake) to the normal size, so that one read can
    /// take in many requests: the buffer only grows by itself for a frame that does not fit.
    pub(crate) fn grow_to_default(&mut self) {
        if self.buf.len() < INITIAL_READ {
            self.buf.resize(INITIAL_READ, 0);
        }
    }

    /// The next complete frame already in the buffer, if any. The range indexes [`Self::bytes`]
    /// and stays valid until the next fill.
    pub(crate) fn next_frame(&mut self) -> Result<Option<(Header, Range<usize>)>, FrameError> {
        match frame::decode(&self.buf[self.start..self.end], self.max_len)? {
            Some((header, payload, used)) => {
                let range = self.start + payload.start..self.start + payload.end;
                self.start += used;
                Ok(Some((header, range)))
            }
            None => Ok(None),
        }
    }

    /// Hands over the buffer of the frame [`Self::next_frame`] just returned (`payload` is its
    /// range) when that frame is large and alone in the buffer — as a frame that made the
    /// buffer grow is — so that its bytes need not be copied out; the reader starts over with a
    /// fresh buffer. `None` for small frames and frames sharing the buffer with others.
    pub(crate) fn take_frame(&mut self, payload: &Range<usize>) -> Option<Bytes> {
        let alone = payload.start == HEADER_LEN && self.start == self.end;
        if !alone || payload.len() < TAKE_ABOVE {
            return None;
        }
        let mut fresh = Bytes::with_capacity(INITIAL_READ);
        fresh.resize(INITIAL_READ, 0);
        self.start = 0;
        self.end = 0;
        // The bytes now belong to the call: they are no longer an incomplete frame held by
        // this reader (the calls a connection runs are bounded by `max_in_flight`).
        self.charge(0);
        Some(std::mem::replace(&mut self.buf, fresh))
    }

    /// The buffer that ranges from [`Self::next_frame`] index.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Whether the next buffered frame's header (complete or not) is of this kind.
    pub(crate) fn next_is(&self, kind: frame::Kind) -> bool {
        self.buf[self.start..self.end]
            .first_chunk::<HEADER_LEN>()
            .is_some_and(|head| head[4] == kind as u8)
    }

    /// Whether bytes of an incomplete frame are buffered.
    pub(crate) fn has_partial(&self) -> bool {
        self.start != self.end
    }

    /// Reads once from `io`, making room first. `Ready(Ok(0))` is end of stream.
    pub(crate) fn poll_fill<IO: AsyncRead + Unpin>(
        &mut self,
        io: &mut IO,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        self.make_room()?;
        let mut read = ReadBuf::new(&mut self.buf[self.end..]);
        ready!(Pin::new(io).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        self.end += n;
        Poll::Ready(Ok(n))
    }

    /// Compacts, and grows towards the size of the current frame (whose length was already
    /// checked against the maximum by the header parse) by doubling, so that what the buffer
    /// holds follows the bytes that arrived.
    ///
    /// # Errors
    /// The shared [`ReadBudget`] cannot pay for the growth.
    fn make_room(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            // One huge frame must not pin a huge buffer for the connection's lifetime.
            if self.buf.len() > SHRINK_ABOVE {
                self.buf = Bytes::with_capacity(INITIAL_READ);
                self.buf.resize(INITIAL_READ, 0);
                self.charge(0);
            }
        }
        let pending = self.end - self.start;
        // The whole current frame, if its header is here and valid; otherwise a header's worth.
        let needed = match self.buf[self.start..self.end].first_chunk::<HEADER_LEN>() {
            Some(head) => Header::parse(head, self.max_len)
                .map(|h| h.wire_len())
                .unwrap_or(HEADER_LEN),
            None => HEADER_LEN,
        }
        .max(pending + 1);
        let free_tail = self.buf.len() - self.end;
        // A read of at least this much is worth making.
        let chunk = 1024.min(needed - pending);
        // Read into the free tail while the frame fits, or while at most half the buffer is
        // taken: a header announcing a large frame costs nothing until its bytes arrive.
        if free_tail >= chunk
            && (self.start + needed <= self.buf.len() || free_tail >= self.buf.len() / 2)
        {
            return Ok(());
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = pending;
        }
        // Double (never past the frame's own size) once the frame's bytes fill the buffer:
        // what it holds stays within about 2× the bytes received, and copying stays linear in
        // them.
        let full = self.buf.len() - self.end < chunk;
        let target = (self.buf.len() * 2)
            .max(INITIAL_READ)
            .min(needed.max(INITIAL_READ));
        if full && target > self.buf.len() {
            if !self.charge(target.saturating_sub(UNCHARGED)) {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "the server's budget for incomplete frames (all connections together) is \
                     spent; closing this connection",
                ));
            }
            self.buf.resize(target, 0);
        }
        Ok(())
    }
}

/// Appends a frame whose payload `fill` writes straight into `out` (an rkyv archive appended
/// in place). On error `out` is left as it was.
pub(crate) fn push_frame<E>(
    out: &mut Bytes,
    mut header: Header,
    fill: impl FnOnce(&mut Bytes) -> Result<(), E>,
) -> Result<(), E> {
    let start = out.len();
    debug_assert!(start.is_multiple_of(frame::ALIGN));
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    if let Err(e) = fill(out) {
        out.resize(start, 0);
        return Err(e);
    }
    let len = out.len() - start - HEADER_LEN;
    header.len = len as u32;
    out[start..start + HEADER_LEN].copy_from_slice(&header.to_bytes());
    out.resize(start + HEADER_LEN + frame::padded(len), 0);
    Ok(())
}

/// Appends a frame with a plain byte payload.
pub(crate) fn push_bytes(out: &mut Bytes, header: Header, payload: &[u8]) {
    let _ = push_frame::<()>(out, header, |out| {
        out.extend_from_slice(payload);
        Ok(())
    });
}

/// Writes `buf[*pos..]` until it is all written or the stream is not ready.
pub(crate) fn poll_write_out<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    buf: &[u8],
    pos: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while *pos < buf.len() {
        let n = ready!(Pin::new(&mut *io).poll_write(cx, &buf[*pos..]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        *pos += n;
    }
    Poll::Ready(Ok(()))
}

/// Most a `spin` setting can ask for (`SynapseConfig::spin`, `MembraneConfig::spin`, and
/// `$CELL_SPIN_US`); longer values are clamped to it. A round trip here is 10–50 µs: a spin
/// longer than a millisecond no longer saves a wake-up, it only burns a core.
pub(crate) const MAX_SPIN: Duration = Duration::from_millis(1);

/// Default of `SynapseConfig::spin` and `MembraneConfig::spin`: zero (park at once) unless
/// `$CELL_SPIN_US` holds a number of microseconds (clamped to [`MAX_SPIN`]). Spinning is
/// opt-in because it collapses under CPU contention (one busy process per CPU, as in CI),
/// where a parked thread is woken promptly and a spinning one gives away whole time slices.
pub(crate) fn default_spin() -> Duration {
    static FROM_ENV: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *FROM_ENV.get_or_init(|| spin_from_env(std::env::var("CELL_SPIN_US").ok().as_deref()))
}

/// The `spin` a `$CELL_SPIN_US` value asks for: microseconds, clamped; anything else is zero.
fn spin_from_env(value: Option<&str>) -> Duration {
    let Some(text) = value else {
        return Duration::ZERO;
    };
    match text.trim().parse::<u64>() {
        Ok(us) => Duration::from_micros(us).min(MAX_SPIN),
        Err(_) => {
            tracing::warn!(value = %text, "CELL_SPIN_US is not a number of µs; not spinning");
            Duration::ZERO
        }
    }
}

/// Bounded, adaptive busy-waiting before a connection's I/O task parks
/// (`SynapseConfig::spin`, `MembraneConfig::spin`; off by default).
///
/// Why: on a VM whose idle vCPUs halt (no guest halt-polling), a thread that parks in
/// `epoll_wait` leaves its vCPU idle, and the peer's reply then costs a cross-vCPU wake-up of
/// the halted vCPU, tens of µs, twice per round trip. Instead of parking at once, the task
/// asks to be polled again after the runtime has checked the socket without blocking
/// (`tokio::task::yield_now`, which makes a `current_thread` runtime poll its I/O driver with a
/// zero timeout), until its window since the last progress is spent. From the second round of
/// an idle stretch on, a `sched_yield` hands the CPU to the peer when both share one core, so
/// spinning does not delay the very thread it waits for; the first round skips it, because
/// right after progress it is usually another task of this runtime (the caller a reply was
/// just handed to) that has work, not the peer.
///
/// The window adapts like the kernel's guest halt-polling: it halves each time spinning was
/// wasted (the task parked and waited longer than the maximum anyway), down to zero, and
/// doubles back towards the maximum when a park ended sooner than the maximum (a longer spin
/// would have caught it). A connection whose traffic comes in bursts spins; an idle one, or a
/// client of a slow server, soon stops spending CPU on it.
///
/// On a contended CPU spinning is harmful: `sched_yield` then hands the CPU to another process
/// for a whole time slice (milliseconds), where a parked thread would have been woken promptly
/// by the kernel's sleeper credit. So each `sched_yield` checks whether this thread really
/// lost its CPU (an involuntary context switch during the yield, which then lasted at least
/// [`LOST_AFTER`]): the stretch parks at once and the whole thread stops spinning for a
/// back-off period ([`Backoff`]). Long rounds alone prove nothing: they are usually the other
/// tasks of this runtime doing their work.
pub(crate) struct Spin {
    /// The configured budget (clamped to [`MAX_SPIN`]): the window never exceeds it, and zero
    /// turns spinning off.
    max: Duration,
    /// How long the next idle stretch spins.
    window: Duration,
    /// When the current idle stretch began (`None` while making progress).
    idle_since: Option<Instant>,
    /// The current idle stretch stopped spinning and parked.
    parked: bool,
    /// The current idle stretch parked because of contention (lost the CPU, or the thread is
    /// backing off): it says nothing about the window, which must not adapt to it.
    backed_off: bool,
    /// The current idle stretch gave the CPU away at least once and got it back promptly.
    yielded: bool,
}

/// What one throttled `sched_yield` observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Yield {
    /// Another spinning task of this thread yielded moments ago: no syscall.
    Skipped,
    /// Yielded and got the CPU back promptly (nobody else, or the peer's short turn).
    Kept,
    /// Another thread took the CPU for at least [`LOST_AFTER`]: the CPU is contended.
    Lost,
}

/// A `sched_yield` during which this thread was switched out for this long lost its CPU to
/// something that is not a peer's short turn (a few µs); under contention it is a whole time
/// slice, milliseconds.
pub(crate) const LOST_AFTER: Duration = Duration::from_micros(50);

/// Per-thread back-off after contention: while it runs, no task of the thread spins. It starts
/// at [`Backoff::FIRST`] and doubles each time spinning loses the CPU again, up to
/// [`Backoff::LONGEST`], so that under sustained contention at most one stretch per period
/// pays a lost time slice; it resets only after a stretch that yielded and kept its CPU.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Backoff {
    /// No spinning before this instant.
    off_until: Option<Instant>,
    /// Length of the last back-off (zero: none since the last uncontended yield).
    period: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const LONGEST: Duration = Duration::from_secs(1);

    fn active(&self, now: Instant) -> bool {
        self.off_until.is_some_and(|until| now < until)
    }

    fn contended(&mut self, now: Instant) {
        self.period = if self.period.is_zero() {
            Self::FIRST
        } else {
            self.period.saturating_mul(2).min(Self::LONGEST)
        };
        self.off_until = now.checked_add(self.period);
    }

    fn reset(&mut self) {
        *self = Backoff::default();
    }
}

thread_local! {
    /// The back-off shared by every spinning task of this thread: contention is a property
    /// of the CPU the thread runs on, not of one connection.
    static BACKOFF: std::cell::Cell<Backoff> = const {
        std::cell::Cell::new(Backoff { off_until: None, period: Duration::ZERO })
    };
    /// When a spinning task of this thread last called `sched_yield`.
    static LAST_YIELD: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
thread_local! {
    /// Idle stretches of this thread that ended in progress without parking: replies or
    /// requests picked up by spinning (tests check that spinning really happens).
    pub(crate) static CAUGHT_SPINNING: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Forgets this thread's back-off (tests that count spinning must not depend on the load).
#[cfg(test)]
pub(crate) fn reset_backoff() {
    BACKOFF.set(Backoff::default());
}

impl Spin {
    pub(crate) fn new(max: Duration) -> Spin {
        let max = max.min(MAX_SPIN);
        Spin {
            max,
            window: max,
            idle_since: None,
            parked: false,
            backed_off: false,
            yielded: false,
        }
    }

    /// The loop made progress: the idle stretch (if any) is over; adapt the window to how long
    /// it lasted.
    pub(crate) fn progress(&mut self) {
        if self.idle_since.is_some() {
            let mut backoff = BACKOFF.get();
            self.progress_at(Instant::now(), &mut backoff);
            BACKOFF.set(backoff);
        }
    }

    /// The loop has nothing to do. Returns `true` when it arranged to be polled again soon
    /// (the caller returns `Pending` without parking), `false` when the window is spent or
    /// zero, or the thread backs off (the caller parks as usual).
    pub(crate) fn keep_polling(&mut self, cx: &mut Context<'_>) -> bool {
        if self.max.is_zero() {
            return false;
        }
        let mut backoff = BACKOFF.get();
        let spin = self.spin_at(Instant::now(), &mut backoff, yield_cpu);
        BACKOFF.set(backoff);
        if !spin {
            return false;
        }
        // Polled once, `yield_now` defers our waker until the runtime has polled its driver
        // without blocking; dropping it afterwards is fine (the waker is already queued).
        let yielded = std::pin::pin!(tokio::task::yield_now());
        let _ = std::future::Future::poll(yielded, cx);
        true
    }

    /// Whether to spin at `now`; `yield_cpu` gives the CPU away (from the second round of a
    /// stretch on) and reports what happened.
    fn spin_at(
        &mut self,
        now: Instant,
        backoff: &mut Backoff,
        yield_cpu: impl FnOnce() -> Yield,
    ) -> bool {
        let since = match self.idle_since {
            None => {
                self.idle_since = Some(now);
                self.yielded = false;
                self.backed_off = backoff.active(now);
                self.parked = self.backed_off || self.window.is_zero();
                return !self.parked;
            }
            Some(_) if self.parked => return false,
            Some(since) => since,
        };
        if backoff.active(now) {
            self.backed_off = true;
            self.parked = true;
            return false;
        }
        if now.saturating_duration_since(since) >= self.window {
            self.parked = true;
            return false;
        }
        match yield_cpu() {
            Yield::Lost => {
                backoff.contended(now);
                self.backed_off = true;
                self.parked = true;
                false
            }
            Yield::Kept => {
                self.yielded = true;
                true
            }
            Yield::Skipped => true,
        }
    }

    fn progress_at(&mut self, now: Instant, backoff: &mut Backoff) {
        let Some(since) = self.idle_since.take() else {
            return;
        };
        let parked = std::mem::take(&mut self.parked);
        let yielded = std::mem::take(&mut self.yielded);
        if std::mem::take(&mut self.backed_off) {
            // Contention, not the traffic, decided this stretch: nothing to learn from it.
            return;
        }
        if yielded {
            backoff.reset();
        }
        if !parked {
            #[cfg(test)]
            CAUGHT_SPINNING.set(CAUGHT_SPINNING.get() + 1);
            return;
        }
        if now.saturating_duration_since(since) <= self.max {
            // Parked, but woken within the maximum: a longer window would have caught it.
            self.window = if self.window.is_zero() {
                (self.max / 8).max(MIN_WINDOW).min(self.max)
            } else {
                self.window.saturating_mul(2).min(self.max)
            };
        } else {
            // Spinning was wasted: the wait was longer than any window.
            self.window /= 2;
            if self.window < self.max / 16 {
                self.window = Duration::ZERO;
            }
        }
    }
}

/// Smallest non-zero window the adaptation grows to from zero (`max / 8` is zero for a tiny
/// `max`, which would stop a shrunk window from ever growing back).
const MIN_WINDOW: Duration = Duration::from_micros(1);

/// `sched_yield`, at most once per [`YIELD_EVERY`] per thread: with many connections spinning
/// on one runtime, one yield per round of the runtime gives a peer on our core its turn; one
/// per connection would only add syscalls. Reports whether the thread lost its CPU.
fn yield_cpu() -> Yield {
    let start = Instant::now();
    let recent = LAST_YIELD
        .get()
        .is_some_and(|t| start.saturating_duration_since(t) < YIELD_EVERY);
    if recent {
        return Yield::Skipped;
    }
    let before = involuntary_switches();
    std::thread::yield_now();
    // From when the CPU came back: the other spinners of this round need not yield again.
    let back = Instant::now();
    LAST_YIELD.set(Some(back));
    // A long yield with no switch was the host, not another thread of this machine: only a
    // second syscall for the (rare) long ones.
    if back.saturating_duration_since(start) >= LOST_AFTER
        && (before.is_none() || involuntary_switches() != before)
    {
        Yield::Lost
    } else {
        Yield::Kept
    }
}

/// This thread's involuntary context switches (a `sched_yield` that ran another thread counts
/// as one), or `None` where the platform cannot tell (then a long yield counts as lost).
#[cfg(target_os = "linux")]
#[expect(
    unsafe_code,
    reason = "getrusage(RUSAGE_THREAD), which std does not wrap"
)]
fn involuntary_switches() -> Option<libc::c_long> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable `rusage`; RUSAGE_THREAD only reads this thread.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    // SAFETY: on success getrusage filled it; on failure it is still zeroed (a valid rusage).
    (rc == 0).then(|| unsafe { usage.assume_init() }.ru_nivcsw)
}

#[cfg(not(target_os = "linux"))]
fn involuntary_switches() -> Option<libc::c_long> {
    None
}

/// See [`yield_cpu`].
const YIELD_EVERY: Duration = Duration::from_micros(2);

/// Reads one whole frame (handshakes), returning its header and an owned payload.
pub(crate) async fn read_one<IO: AsyncRead + Unpin>(
    io: &mut IO,
    reader: &mut FrameReader,
) -> io::Result<(Header, Vec<u8>)> {
    loop {
        match reader.next_frame() {
            Ok(Some((header, range))) => return Ok((header, reader.bytes()[range].to_vec())),
            Ok(None) => {}
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
        let n = std::future::poll_fn(|cx| reader.poll_fill(io, cx)).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Kind;
    use tokio::io::AsyncWriteExt;

    /// Fills `reader` from `io` until the socket has nothing more right now.
    fn fill_all(reader: &mut FrameReader, io: &mut tokio::io::DuplexStream) -> io::Result<()> {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        loop {
            match reader.poll_fill(io, &mut cx) {
                Poll::Ready(Ok(0)) | Poll::Pending => return Ok(()),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Err(e),
            }
        }
    }

    fn announce(len: u32) -> [u8; HEADER_LEN] {
        let mut header = Header::new(Kind::Request);
        header.len = len;
        header.to_bytes()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_announced_frame_costs_only_the_bytes_that_arrived() {
        let (mut client, mut server) = tokio::io::duplex(4 << 20);
        let mut reader = FrameReader::new(16 << 20);
        client.write_all(&announce(16 << 20)).await.unwrap();
        fill_all(&mut reader, &mut server).unwrap();
        assert!(reader.next_frame().unwrap().is_none());
        assert!(
            reader.bytes().len() <= INITIAL_READ,
            "a 16 MiB header alone grew the buffer to {} bytes",
            reader.bytes().len()
        );
        // A megabyte of it arrives: the buffer follows (doubling), still far from 16 MiB.
        client.write_all(&vec![7u8; 1 << 20]).await.unwrap();
        fill_all(&mut reader, &mut server).unwrap();
        let len = reader.bytes().len();
        assert!(
            len > 1 << 20 && len <= 2 << 20,
            "{len} bytes for 1 MiB received"
        );
        // The rest completes the frame, whose payload is then read in place.
        let mut rest = vec![7u8; (15 << 20) - 1];
        rest.push(9);
        let writer = tokio::spawn(async move {
            client.write_all(&rest).await.unwrap();
            client
        });
        let mut frame = None;
        while frame.is_none() {
            tokio::task::yield_now().await;
            fill_all(&mut reader, &mut server).unwrap();
            frame = reader.next_frame().unwrap();
        }
        let (header, range) = frame.unwrap();
        assert_eq!(header.len, 16 << 20);
        assert_eq!(reader.bytes()[range].last(), Some(&9));
        drop(writer.await.unwrap());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn readers_sharing_a_budget_cannot_hold_more_than_it() {
        let budget = std::sync::Arc::new(ReadBudget::new(3 << 20));
        let mut pairs = Vec::new();
        let mut outcomes = Vec::new();
        for _ in 0..4 {
            let (mut client, mut server) = tokio::io::duplex(4 << 20);
            let mut reader = FrameReader::new(16 << 20);
            reader.set_budget(budget.clone());
            client.write_all(&announce(16 << 20)).await.unwrap();
            client.write_all(&vec![1u8; 1 << 20]).await.unwrap();
            outcomes.push(fill_all(&mut reader, &mut server).map_err(|e| e.kind()));
            pairs.push((client, server, reader));
        }
        assert!(budget.used() <= 3 << 20, "{} bytes charged", budget.used());
        assert!(outcomes[0].is_ok(), "{outcomes:?}");
        assert!(
            outcomes.contains(&Err(io::ErrorKind::OutOfMemory)),
            "4 MiB of incomplete frames fit a 3 MiB budget: {outcomes:?}"
        );
        // Readers give their share back when they go.
        drop(pairs);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_reader_started_small_grows_to_the_normal_size_for_requests() {
        // Small frames never make a small buffer grow by themselves: each read would then
        // take in only a few requests (this cost a sixth of the server's throughput).
        let mut reader = FrameReader::with_capacity(512, 4096);
        assert_eq!(reader.bytes().len(), 512);
        reader.grow_to_default();
        assert_eq!(reader.bytes().len(), INITIAL_READ);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_zero_spin_budget_parks_at_once_and_budgets_are_clamped() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut off = Spin::new(Duration::ZERO);
        assert!(!off.keep_polling(&mut cx));
        off.progress();
        assert!(!off.keep_polling(&mut cx));
        // An hour is clamped to the maximum; within it, it keeps polling round after round.
        let mut long = Spin::new(Duration::from_secs(3600));
        assert_eq!((long.max, long.window), (MAX_SPIN, MAX_SPIN));
        assert!(long.keep_polling(&mut cx));
        // Off by default (the test environment does not set CELL_SPIN_US).
        if std::env::var_os("CELL_SPIN_US").is_none() {
            assert_eq!(default_spin(), Duration::ZERO);
        }
    }

    #[test]
    fn cell_spin_us_opts_in_and_is_clamped() {
        assert_eq!(spin_from_env(None), Duration::ZERO);
        assert_eq!(spin_from_env(Some(" 50 ")), Duration::from_micros(50));
        assert_eq!(spin_from_env(Some("5000000")), MAX_SPIN);
        assert_eq!(spin_from_env(Some("fast")), Duration::ZERO);
        assert_eq!(spin_from_env(Some("-3")), Duration::ZERO);
    }

    /// Spins from `start` in rounds of `round` with yields that report `outcome`, until it
    /// parks; returns when it parked, or `None` if it still spun at `limit`.
    fn spin_until_parked(
        spin: &mut Spin,
        backoff: &mut Backoff,
        start: Instant,
        round: Duration,
        limit: Duration,
        outcome: Yield,
    ) -> Option<Duration> {
        let mut at = Duration::ZERO;
        while at <= limit {
            if !spin.spin_at(start + at, backoff, || outcome) {
                return Some(at);
            }
            at += round;
        }
        None
    }

    #[test]
    fn the_spin_window_shrinks_when_wasted_and_grows_when_too_short() {
        let us = Duration::from_micros;
        let kept = Yield::Kept;
        let mut b = Backoff::default();
        let t0 = Instant::now();
        let mut spin = Spin::new(us(64));
        // Progress while spinning: the window stays.
        assert_eq!(
            spin_until_parked(&mut spin, &mut b, t0, us(5), us(30), kept),
            None
        );
        spin.progress_at(t0 + us(31), &mut b);
        assert_eq!(spin.window, us(64));
        // The window runs out and the wait lasts far longer: wasted, halve it.
        let t1 = t0 + us(100);
        assert_eq!(
            spin_until_parked(&mut spin, &mut b, t1, us(5), us(1000), kept),
            Some(us(65))
        );
        assert!(
            !spin.spin_at(t1 + us(70), &mut b, || kept),
            "a stretch that parked spins no more"
        );
        spin.progress_at(t1 + us(5_000), &mut b);
        assert_eq!(spin.window, us(32));
        // Wasted again and again: down to zero, then it parks at once.
        let mut t = t1 + us(10_000);
        for expected in [16, 8, 4, 0] {
            assert!(spin_until_parked(&mut spin, &mut b, t, us(5), us(1000), kept).is_some());
            spin.progress_at(t + us(5_000), &mut b);
            assert_eq!(spin.window, us(expected));
            t += us(10_000);
        }
        assert!(!spin.spin_at(t, &mut b, || kept));
        // Woken soon after parking (a longer spin would have caught it): grow back.
        spin.progress_at(t + us(20), &mut b);
        assert_eq!(spin.window, us(8));
        for expected in [16, 32, 64, 64] {
            t += us(10_000);
            let parked = spin_until_parked(&mut spin, &mut b, t, us(5), us(1000), kept);
            assert!(parked.is_some_and(|p| p >= spin.window));
            spin.progress_at(t + us(50), &mut b);
            assert_eq!(spin.window, us(expected));
        }
    }

    #[test]
    fn a_tiny_budget_shrunk_to_zero_grows_back() {
        // max / 8 is zero for a budget under 8 ns: growth from zero must still happen.
        let ns = Duration::from_nanos;
        let mut b = Backoff::default();
        let mut spin = Spin::new(ns(5));
        let mut t = Instant::now();
        // 5 → 2 → 1 → 0 ns.
        for _ in 0..3 {
            assert!(spin.spin_at(t, &mut b, || Yield::Kept));
            assert!(!spin.spin_at(t + ns(10), &mut b, || Yield::Kept));
            spin.progress_at(t + Duration::from_millis(1), &mut b);
            t += Duration::from_millis(2);
        }
        assert_eq!(spin.window, Duration::ZERO);
        assert!(!spin.spin_at(t, &mut b, || Yield::Kept));
        spin.progress_at(t + ns(1), &mut b);
        assert_eq!(spin.window, ns(5));
    }

    #[test]
    fn long_rounds_without_losing_the_cpu_are_not_contention() {
        // Rounds of 40 µs are other tasks of this runtime doing their work between our polls:
        // the thread kept its CPU (no involuntary switch), so the window stays and nothing
        // backs off.
        let us = Duration::from_micros;
        let mut b = Backoff::default();
        let mut spin = Spin::new(us(500));
        let t = Instant::now();
        assert_eq!(
            spin_until_parked(&mut spin, &mut b, t, us(40), us(400), Yield::Kept),
            None
        );
        spin.progress_at(t + us(410), &mut b);
        assert_eq!(spin.window, us(500));
        assert!(!b.active(t + us(411)));
        assert!(spin.spin_at(t + us(420), &mut b, || Yield::Kept));
    }

    #[test]
    fn sustained_contention_costs_at_most_one_yielding_stretch_per_back_off() {
        let us = Duration::from_micros;
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut b = Backoff::default();
        // Two connections of one thread share its back-off; a first wasted stretch shrinks
        // A's window so that growth during back-off would show.
        let mut a = Spin::new(us(64));
        let mut c = Spin::new(us(64));
        assert!(spin_until_parked(&mut a, &mut b, t0, us(5), us(1000), Yield::Kept).is_some());
        a.progress_at(t0 + ms(5), &mut b);
        assert_eq!(a.window, us(32));
        // Every yield loses the CPU, for 12 s of stretches every 100 µs (a reply 20 µs in).
        let mut yields: Vec<Instant> = Vec::new();
        let mut t = t0 + ms(10);
        let end = t + Duration::from_secs(12);
        let mut turn = 0u64;
        while t < end {
            let spin = if turn.is_multiple_of(2) {
                &mut a
            } else {
                &mut c
            };
            let mut round = Duration::ZERO;
            while round < us(20) {
                let mut lost = false;
                let go = spin.spin_at(t + round, &mut b, || {
                    lost = true;
                    Yield::Lost
                });
                if lost {
                    yields.push(t + round);
                }
                if !go {
                    break;
                }
                round += us(5);
            }
            spin.progress_at(t + us(20), &mut b);
            t += us(100);
            turn += 1;
        }
        assert_eq!(a.window, us(32), "no growth while backing off");
        // Back-off periods of 10, 20, 40, ... ms, then 1 s: each yield is followed by at
        // least its period without another.
        let mut period = Backoff::FIRST;
        for pair in yields.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            assert!(gap >= period, "{gap:?} < {period:?}");
            period = (period * 2).min(Backoff::LONGEST);
        }
        // 10+20+...+640 ms ≈ 1.3 s, then one per second: 7 + ~11 yields in 12 s, not 120,000.
        assert!((15..=20).contains(&yields.len()), "{}", yields.len());
        // Contention over: the first stretch that yields and keeps its CPU resets the back-off.
        let after = t + Backoff::LONGEST;
        assert!(a.spin_at(after, &mut b, || Yield::Kept));
        assert!(a.spin_at(after + us(5), &mut b, || Yield::Kept));
        a.progress_at(after + us(10), &mut b);
        assert_eq!(b.period, Duration::ZERO);
        assert!(c.spin_at(after + us(20), &mut b, || Yield::Kept));
        assert!(!c.spin_at(after + us(25), &mut b, || Yield::Lost));
        assert_eq!(b.period, Backoff::FIRST, "a new episode starts short again");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn frames_larger_than_the_buffer_and_many_small_ones_are_read() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let big = vec![7u8; 100_000];
        let mut out = Bytes::new();
        for i in 0..50u32 {
            let mut h = Header::new(Kind::Request);
            h.id = i;
            push_bytes(&mut out, h, &i.to_le_bytes());
        }
        push_bytes(&mut out, Header::new(Kind::Request), &big);
        tokio::spawn(async move { a.write_all(&out).await.unwrap() });
        let mut reader = FrameReader::new(1 << 20);
        for i in 0..50u32 {
            let (h, payload) = read_one(&mut b, &mut reader).await.unwrap();
            assert_eq!((h.id, payload), (i, i.to_le_bytes().to_vec()));
        }
        let (_, payload) = read_one(&mut b, &mut reader).await.unwrap();
        assert_eq!(payload, big);
    }
}
