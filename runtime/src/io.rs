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

/// Buffers that grew beyond this for one large frame are given back once it is consumed.
pub(crate) const SHRINK_ABOVE: usize = 1 << 20;

/// Reads frames from a stream into one aligned buffer.
///
/// Invariant: `start` is a multiple of 16 (frames occupy multiples of 16 bytes and compaction
/// moves data to offset 0), so every payload sits 16-byte aligned for in-place validation.
pub(crate) struct FrameReader {
    buf: Bytes,
    start: usize,
    end: usize,
    max_len: u32,
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
        }
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
        self.make_room();
        let mut read = ReadBuf::new(&mut self.buf[self.end..]);
        ready!(Pin::new(io).poll_read(cx, &mut read))?;
        let n = read.filled().len();
        self.end += n;
        Poll::Ready(Ok(n))
    }

    /// Compacts and grows so that at least the rest of the current frame (whose length was
    /// already checked against the maximum by the header parse) or a good chunk fits.
    fn make_room(&mut self) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            // One huge frame must not pin a huge buffer for the connection's lifetime.
            if self.buf.len() > SHRINK_ABOVE {
                self.buf = Bytes::with_capacity(INITIAL_READ);
                self.buf.resize(INITIAL_READ, 0);
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
        if self.start + needed <= self.buf.len() && free_tail >= 1024.min(needed) {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = pending;
        }
        if needed > self.buf.len() || self.buf.len() - self.end < 1024.min(needed) {
            let target = needed.max(self.buf.len() * 2).max(INITIAL_READ);
            self.buf.resize(target, 0);
        }
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

/// Bounded, adaptive busy-waiting before a connection's I/O task parks
/// (`SynapseConfig::spin`, `MembraneConfig::spin`).
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
/// by the kernel's sleeper credit. A spin round that took longer than [`Spin::CONTENDED`]
/// shows exactly that: the stretch parks at once and the window halves.
pub(crate) struct Spin {
    /// The configured budget: the window never exceeds it, and zero turns spinning off.
    max: Duration,
    /// How long the next idle stretch spins.
    window: Duration,
    /// When the current idle stretch began (`None` while making progress).
    idle_since: Option<Instant>,
    /// The current idle stretch stopped spinning and parked.
    parked: bool,
    /// The current idle stretch lost the CPU for longer than [`Spin::CONTENDED`] in one round.
    contended: bool,
    /// When the last spin round ran.
    last_round: Option<Instant>,
}

impl Spin {
    pub(crate) fn new(max: Duration) -> Spin {
        Spin {
            max,
            window: max,
            idle_since: None,
            parked: false,
            contended: false,
            last_round: None,
        }
    }

    /// One spin round (a non-blocking poll of the driver and, with a peer on our core, its
    /// turn to run) takes a few µs; one that took this long lost the CPU to another thread.
    const CONTENDED: Duration = Duration::from_micros(30);

    /// The loop made progress: the idle stretch (if any) is over; adapt the window to how long
    /// it lasted.
    pub(crate) fn progress(&mut self) {
        if self.idle_since.is_some() {
            self.progress_at(Instant::now());
        }
    }

    /// The loop has nothing to do. Returns `true` when it arranged to be polled again soon
    /// (the caller returns `Pending` without parking), `false` when the window is spent or
    /// zero (the caller parks as usual).
    pub(crate) fn keep_polling(&mut self, cx: &mut Context<'_>) -> bool {
        if self.max.is_zero() {
            return false;
        }
        if !self.spin_at(Instant::now()) {
            return false;
        }
        // Polled once, `yield_now` defers our waker until the runtime has polled its driver
        // without blocking; dropping it afterwards is fine (the waker is already queued).
        let yielded = std::pin::pin!(tokio::task::yield_now());
        let _ = std::future::Future::poll(yielded, cx);
        true
    }

    /// Whether to spin at `now` (yielding the CPU from the second round of a stretch on).
    fn spin_at(&mut self, now: Instant) -> bool {
        let last_round = self.last_round.replace(now);
        match self.idle_since {
            None => {
                self.idle_since = Some(now);
                self.parked = self.window.is_zero();
                !self.parked
            }
            Some(_) if self.parked => false,
            Some(_)
                if last_round.is_some_and(|last| now.duration_since(last) >= Self::CONTENDED) =>
            {
                self.contended = true;
                self.parked = true;
                false
            }
            Some(since) if now.duration_since(since) >= self.window => {
                self.parked = true;
                false
            }
            Some(_) => {
                yield_cpu(now);
                true
            }
        }
    }

    fn progress_at(&mut self, now: Instant) {
        let Some(since) = self.idle_since.take() else {
            return;
        };
        self.last_round = None;
        if std::mem::take(&mut self.contended) {
            self.parked = false;
            self.shrink();
        } else if std::mem::take(&mut self.parked) {
            if now.duration_since(since) <= self.max {
                // Parked, but woken within the maximum: a longer window would have caught it.
                self.window = if self.window.is_zero() {
                    self.max / 8
                } else {
                    (self.window * 2).min(self.max)
                };
            } else {
                // Spinning was wasted: the wait was longer than any window.
                self.shrink();
            }
        }
    }

    fn shrink(&mut self) {
        self.window /= 2;
        if self.window < self.max / 16 {
            self.window = Duration::ZERO;
        }
    }
}

thread_local! {
    /// When a spinning task of this thread last called `sched_yield`.
    static LAST_YIELD: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// `sched_yield`, at most once per [`YIELD_EVERY`] per thread: with many connections spinning
/// on one runtime, one yield per round of the runtime gives a peer on our core its turn; one
/// per connection would only add syscalls.
fn yield_cpu(now: Instant) {
    let recent = LAST_YIELD
        .get()
        .is_some_and(|t| now.duration_since(t) < YIELD_EVERY);
    if !recent {
        std::thread::yield_now();
        // From when the CPU came back: the other spinners of this round need not yield again.
        LAST_YIELD.set(Some(Instant::now()));
    }
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
    async fn a_zero_spin_budget_parks_at_once() {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut off = Spin::new(Duration::ZERO);
        assert!(!off.keep_polling(&mut cx));
        off.progress();
        assert!(!off.keep_polling(&mut cx));
        // A budget far longer than this test keeps polling, round after round.
        let mut long = Spin::new(Duration::from_secs(3600));
        assert!(long.keep_polling(&mut cx));
        assert!(long.keep_polling(&mut cx));
    }

    /// Spins from `start` in rounds of 5 µs (an uncontended round) until it parks; returns
    /// when it parked, or `None` if it still spun at `limit`.
    fn spin_until_parked(spin: &mut Spin, start: Instant, limit: Duration) -> Option<Duration> {
        let mut at = Duration::ZERO;
        while at <= limit {
            if !spin.spin_at(start + at) {
                return Some(at);
            }
            at += Duration::from_micros(5);
        }
        None
    }

    #[test]
    fn the_spin_window_shrinks_when_wasted_and_grows_when_too_short() {
        let us = Duration::from_micros;
        let t0 = Instant::now();
        let mut spin = Spin::new(us(64));
        // Progress while spinning: the window stays.
        assert_eq!(spin_until_parked(&mut spin, t0, us(30)), None);
        spin.progress_at(t0 + us(31));
        assert_eq!(spin.window, us(64));
        // The window runs out and the wait lasts far longer: wasted, halve it.
        let t1 = t0 + us(100);
        assert_eq!(spin_until_parked(&mut spin, t1, us(1000)), Some(us(65)));
        assert!(
            !spin.spin_at(t1 + us(70)),
            "a stretch that parked spins no more"
        );
        spin.progress_at(t1 + us(5_000));
        assert_eq!(spin.window, us(32));
        // Wasted again and again: down to zero, then it parks at once.
        let mut t = t1 + us(10_000);
        for expected in [16, 8, 4, 0] {
            assert!(spin_until_parked(&mut spin, t, us(1000)).is_some());
            spin.progress_at(t + us(5_000));
            assert_eq!(spin.window, us(expected));
            t += us(10_000);
        }
        assert!(!spin.spin_at(t));
        // Woken soon after parking (a longer spin would have caught it): grow back.
        spin.progress_at(t + us(20));
        assert_eq!(spin.window, us(8));
        for expected in [16, 32, 64, 64] {
            t += us(10_000);
            let parked = spin_until_parked(&mut spin, t, us(1000));
            assert!(parked.is_some_and(|p| p >= spin.window));
            spin.progress_at(t + us(50));
            assert_eq!(spin.window, us(expected));
        }
        // One round that lost the CPU for long (another process ran): park and halve, even
        // though the reply is there right after.
        t += us(10_000);
        assert!(spin.spin_at(t));
        assert!(spin.spin_at(t + us(2)));
        assert!(!spin.spin_at(t + us(2) + Spin::CONTENDED), "contended");
        spin.progress_at(t + us(3) + Spin::CONTENDED);
        assert_eq!(spin.window, us(32));
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
