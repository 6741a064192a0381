//! Errors of the gateway library itself (start-up and I/O). Errors a request runs into are
//! [`crate::respond::GatewayErrorKind`]: they become APIG error responses, never a `GatewayError`.

use std::net::SocketAddr;

/// Why [`crate::run`] could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A setting in [`crate::GatewayConfig`] is unusable.
    #[error("invalid gateway configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// Any other I/O failure at start-up.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with [`GatewayError`].
pub type Result<T, E = GatewayError> = std::result::Result<T, E>;
