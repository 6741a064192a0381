//! A budget for HTTP/2 control frames a client sends (R9: SETTINGS and PING floods, and the
//! PRIORITY and empty-frame floods of the same family, CVE-2019-9512/9513/9515/9518).
//!
//! The h2 crate already bounds the memory such a flood can take (it answers a PING or SETTINGS
//! before it reads on, so a client that does not read stalls itself), but a client that reads
//! its acknowledgements can keep a core busy answering frames that carry no request. No hyper
//! or h2 setting limits that, so this wrapper watches the bytes a connection reads: once the
//! client preface shows it is HTTP/2, it follows the frame headers (nine bytes each, payloads
//! skipped without being looked at) and charges each control frame to a token bucket. A client
//! that goes past the bucket gets its connection closed (a read error hyper cannot recover from),
//! as Envoy does; a connection that is not HTTP/2 is never looked at past its first bytes.
//!
//! Charged: PING and SETTINGS that are not acknowledgements, PRIORITY, and DATA or HEADERS
//! frames with an empty payload that do not end their stream. Legitimate clients send a few of
//! these per connection (settings at start, keep-alive pings), far below the bucket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;
const END_STREAM: u8 = 0x1;

/// How many control frames a connection may send: a burst, then a steady rate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ControlFrameBudget {
    pub burst: u32,
    pub per_second: u32,
}

impl Default for ControlFrameBudget {
    fn default() -> Self {
        // A browser or gRPC client sends a handful per connection; a flood sends thousands per
        // second. Generous enough that keep-alive and BDP pings never come near it.
        Self {
            burst: 1_000,
            per_second: 100,
        }
    }
}

/// Where the frame scanner is in the byte stream.
#[derive(Debug)]
enum Scan {
    /// Matching the client preface; `n` bytes matched so far.
    Preface(usize),
    /// Collecting a frame header.
    Header {
        buf: [u8; FRAME_HEADER],
        have: usize,
    },
    /// Skipping a frame's payload.
    Payload(usize),
    /// Not HTTP/2 (or already over budget): nothing more to look at.
    Off,
}

impl Scan {
    fn header() -> Self {
        Scan::Header {
            buf: [0; FRAME_HEADER],
            have: 0,
        }
    }
}

/// The scanner and the bucket, apart from any I/O so they can be tested on byte slices.
#[derive(Debug)]
pub(crate) struct FrameWatch {
    scan: Scan,
    budget: ControlFrameBudget,
    tokens: f64,
    refilled: Option<Instant>,
}

impl FrameWatch {
    pub(crate) fn new(budget: ControlFrameBudget) -> Self {
        Self {
            scan: Scan::Preface(0),
            budget,
            tokens: f64::from(budget.burst),
            refilled: None,
        }
    }

    /// Looks at bytes the client sent; `Err` once the client is over its budget.
    pub(crate) fn observe(&mut self, mut bytes: &[u8]) -> Result<(), Flood> {
        while !bytes.is_empty() {
            match &mut self.scan {
                Scan::Off => return Ok(()),
                Scan::Preface(n) => {
                    let want = PREFACE.get(*n..).unwrap_or_default();
                    let take = want.len().min(bytes.len());
                    let (head, rest) = bytes.split_at_checked(take).unwrap_or((bytes, &[]));
                    if !want.starts_with(head) {
                        self.scan = Scan::Off;
                        return Ok(());
                    }
                    *n += take;
                    bytes = rest;
                    if *n == PREFACE.len() {
                        self.scan = Scan::header();
                    }
                }
                Scan::Header { buf, have } => {
                    let (head, rest) = bytes
                        .split_at_checked((FRAME_HEADER - *have).min(bytes.len()))
                        .unwrap_or((bytes, &[]));
                    for (slot, byte) in buf.iter_mut().skip(*have).zip(head) {
                        *slot = *byte;
                    }
                    *have += head.len();
                    bytes = rest;
                    if *have == FRAME_HEADER {
                        let [l0, l1, l2, kind, flags, ..] = *buf;
                        let len =
                            (usize::from(l0) << 16) | (usize::from(l1) << 8) | usize::from(l2);
                        self.scan = if len == 0 {
                            Scan::header()
                        } else {
                            Scan::Payload(len)
                        };
                        if is_control(kind, flags, len) {
                            self.charge()?;
                        }
                    }
                }
                Scan::Payload(left) => {
                    let take = (*left).min(bytes.len());
                    *left -= take;
                    bytes = bytes.get(take..).unwrap_or_default();
                    if *left == 0 {
                        self.scan = Scan::header();
                    }
                }
            }
        }
        Ok(())
    }

    fn charge(&mut self) -> Result<(), Flood> {
        let now = Instant::now();
        if let Some(last) = self.refilled {
            let earned = now.duration_since(last).as_secs_f64() * f64::from(self.budget.per_second);
            self.tokens = (self.tokens + earned).min(f64::from(self.budget.burst));
        }
        self.refilled = Some(now);
        if self.tokens < 1.0 {
            self.scan = Scan::Off;
            return Err(Flood);
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

fn is_control(kind: u8, flags: u8, len: usize) -> bool {
    match kind {
        PING | SETTINGS => flags & ACK == 0,
        PRIORITY => true,
        DATA | HEADERS => len == 0 && flags & END_STREAM == 0,
        _ => false,
    }
}

/// A client went past its control-frame budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flood;

/// A client connection whose reads are watched for control-frame floods.
pub(crate) struct FloodGuard<S> {
    inner: S,
    watch: FrameWatch,
    closed: IntCounter,
    flooded: bool,
}

impl<S> FloodGuard<S> {
    pub(crate) fn new(inner: S, budget: ControlFrameBudget, closed: IntCounter) -> Self {
        Self {
            inner,
            watch: FrameWatch::new(budget),
            closed,
            flooded: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FloodGuard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.flooded {
            return Poll::Ready(Err(flood_error()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let fresh = buf.filled().get(before..).unwrap_or_default();
            if this.watch.observe(fresh).is_err() {
                this.flooded = true;
                this.closed.inc();
                tracing::debug!("HTTP/2 control frame flood; closing the connection");
                return Poll::Ready(Err(flood_error()));
            }
        }
        polled
    }
}

fn flood_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "HTTP/2 control frames over budget",
    )
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FloodGuard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn small() -> FrameWatch {
        FrameWatch::new(ControlFrameBudget {
            burst: 10,
            per_second: 1,
        })
    }

    #[test]
    fn a_ping_flood_goes_over_budget() {
        let mut w = small();
        w.observe(PREFACE).unwrap();
        let ping = frame(PING, 0, &[0; 8]);
        for _ in 0..10 {
            assert_eq!(w.observe(&ping), Ok(()));
        }
        assert_eq!(w.observe(&ping), Err(Flood));
    }

    #[test]
    fn frames_split_across_reads_are_followed() {
        let mut w = small();
        let mut bytes = PREFACE.to_vec();
        for _ in 0..11 {
            bytes.extend(frame(SETTINGS, 0, &[0, 3, 0, 0, 0, 100]));
        }
        // One byte at a time: the 11th SETTINGS is caught all the same.
        let mut verdict = Ok(());
        for b in &bytes {
            verdict = verdict.and(w.observe(std::slice::from_ref(b)));
        }
        assert_eq!(verdict, Err(Flood));
    }

    #[test]
    fn requests_acks_and_payload_bytes_are_not_charged() {
        let mut w = small();
        w.observe(PREFACE).unwrap();
        // A payload that looks like PING frames must be skipped, not parsed.
        let fake_pings: Vec<u8> = (0..50).flat_map(|_| frame(PING, 0, &[0; 8])).collect();
        for _ in 0..100 {
            w.observe(&frame(HEADERS, 0x4, &[0x82])).unwrap();
            w.observe(&frame(DATA, END_STREAM, &fake_pings)).unwrap();
            w.observe(&frame(PING, ACK, &[0; 8])).unwrap();
            w.observe(&frame(SETTINGS, ACK, &[])).unwrap();
            w.observe(&frame(DATA, END_STREAM, &[])).unwrap();
        }
    }

    #[test]
    fn empty_frames_and_priority_are_charged() {
        let mut w = small();
        w.observe(PREFACE).unwrap();
        for _ in 0..5 {
            w.observe(&frame(DATA, 0, &[])).unwrap();
            w.observe(&frame(PRIORITY, 0, &[0, 0, 0, 0, 16])).unwrap();
        }
        assert_eq!(w.observe(&frame(DATA, 0, &[])), Err(Flood));
    }

    #[test]
    fn http1_is_never_looked_at() {
        let mut w = small();
        let mut bytes = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        for _ in 0..100 {
            bytes.extend(frame(PING, 0, &[0; 8]));
        }
        assert_eq!(w.observe(&bytes), Ok(()));
        assert!(matches!(w.scan, Scan::Off));
    }

    #[test]
    fn the_bucket_refills_over_time() {
        let mut w = FrameWatch::new(ControlFrameBudget {
            burst: 2,
            per_second: 1_000,
        });
        w.observe(PREFACE).unwrap();
        let ping = frame(PING, 0, &[0; 8]);
        for _ in 0..20 {
            w.observe(&ping).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}
