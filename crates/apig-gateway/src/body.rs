//! The body of every response the gateway sends: a complete buffer it built itself (errors, mocks,
//! admin answers) or the backend's body, streamed through without copying or boxing.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::channel::health::InFlight;
use crate::http1_pool::BackendBody;

/// A response body: gateway-built bytes, or the backend's streamed body.
#[derive(Debug)]
pub enum ResponseBody {
    /// A complete body; `None` once it has been sent.
    Full(Option<Bytes>),
    /// The backend's body, passed through frame by frame, with the channel member's in-flight
    /// count held until the body is done (dropped).
    Upstream {
        body: BackendBody,
        _in_flight: Option<InFlight>,
    },
}

// === impl ResponseBody ===

impl ResponseBody {
    /// A complete body of these bytes.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            Self::Full(None)
        } else {
            Self::Full(Some(bytes))
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Self::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Self::Upstream { body, .. } => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(bytes) => bytes.is_none(),
            Self::Upstream { body, .. } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Self::Full(None) => SizeHint::with_exact(0),
            Self::Upstream { body, .. } => body.size_hint(),
        }
    }
}
