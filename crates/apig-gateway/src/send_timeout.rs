//! A write deadline on client connections: a client that stops reading (a slow reader, or one
//! that never reads a large response) gets its connection closed once no byte could be written
//! for the send timeout, like nginx's `send_timeout`. Without it, such a client holds its
//! connection, the backend connection feeding it and their buffers for as long as it likes.
//!
//! The deadline runs only while a write or flush is stalled and restarts at every bit of
//! progress, so a slow but steady reader is served; its timer is allocated once per connection,
//! on the first stall.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pub(crate) struct SendTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Armed while writing is stalled; created on the first stall.
    deadline: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl<S> SendTimeout<S> {
    pub(crate) fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            deadline: None,
            armed: false,
        }
    }

    /// The inner write made progress (or failed): the deadline stops.
    fn progressed<T>(&mut self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.armed = false;
        result
    }

    /// The inner write is stalled: start the deadline (if not running) and fail once it passes.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let at = Instant::now() + self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if !self.armed {
            deadline.as_mut().reset(at);
            self.armed = true;
        }
        ready!(deadline.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing for the send timeout",
        )))
    }

    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        match poll(Pin::new(&mut self.inner), cx) {
            Poll::Pending => self.stalled(cx),
            done => self.progressed(done),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().guard(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .guard(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard(cx, |s, cx| s.poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_reader_that_stops_reading_times_the_writer_out() {
        let (client, server) = tokio::io::duplex(1024);
        let mut writer = SendTimeout::new(server, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let chunk = vec![0u8; 4096];
        let err = loop {
            if let Err(e) = writer.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(client);
    }

    #[tokio::test]
    async fn a_slow_steady_reader_is_served() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut writer = SendTimeout::new(server, Duration::from_millis(300));
        let reader = tokio::spawn(async move {
            let mut got = 0usize;
            let mut buf = [0u8; 64];
            // Reads a little every 100 ms: slower than the writer, faster than the deadline.
            while got < 2048 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                got += client.read(&mut buf).await.unwrap();
            }
            got
        });
        writer
            .write_all(&[1u8; 2048])
            .await
            .expect("never times out");
        assert!(reader.await.unwrap() >= 2048);
    }
}
