//! Facts about one request that the gateway decides, not the client: its id, the TCP peer and
//! local address, the client address (`client_ip`), when it arrived, (once authentication ran)
//! who the caller is, and (with `X-Apig-Mode: debug`) what the throttle counters and the app's
//! credential quota said.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderValue;

use apig_policy::{Decision, Verdict};

use crate::auth::{Caller, Transport};
use crate::authorizer::AuthContext;
use crate::metrics::ApiMetrics;

/// 32 lowercase hex digits from 128 random bits, as APIG's `X-Request-Id`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId([u8; 32]);

/// The per-request facts the pipeline and system parameters read.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    pub request_id: RequestId,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The client: the peer, or from a trusted proxy the address it reports (`client_ip`). ACLs,
    /// IP throttling, `$context.sourceIp` and logs use it.
    pub client_ip: IpAddr,
    /// From a trusted proxy: the forwarded chain from the client on, to which the peer is
    /// appended in the backend's `X-Forwarded-For`.
    pub forwarded_chain: Option<Box<str>>,
    /// Our side of the connection (`$context.serverAddr`).
    pub local: SocketAddr,
    pub received_at: SystemTime,
    /// Set by the authentication step; `Anonymous` before it and for `NONE` APIs.
    pub caller: Caller,
    /// `X-Apig-Mode: debug` was asked for.
    pub debug: bool,
    /// With `debug`: what the throttle counters said, for the `X-Apig-RateLimit-*` headers.
    pub rate_limits: Option<Verdict>,
    /// With `debug`: what the app's credential quota said, for `X-Apig-RateLimit-app-quota`.
    pub app_quota: Option<Decision>,
    /// For latencies.
    pub started: Instant,
    /// The request came over TLS (`X-Forwarded-Proto: https`).
    pub tls: bool,
    /// Whether credentials that must travel encrypted (AppCodes) are accepted: over TLS, from
    /// a trusted proxy that says the client used HTTPS, or anywhere when the operator allows it.
    pub transport: Transport,
    /// The matched API's metric handles (and its id and environment, for the access log).
    pub api_metrics: Option<Arc<ApiMetrics>>,
    /// The backend call that answered: its address, and how long it took to the response head.
    pub upstream: Option<(String, Duration)>,
    /// The frontend custom authorizer's context (`$context.authorizer.frontend.<key>`).
    pub frontend_authorizer: Option<Arc<AuthContext>>,
    /// The backend authorizer's context (`$context.authorizer.backend.<key>`).
    pub backend_authorizer: Option<Arc<AuthContext>>,
    /// With OpenTelemetry export on: the W3C `traceparent` naming this request's span, sent to
    /// the backend instead of the client's (`otel`).
    pub traceparent: Option<HeaderValue>,
}

// === impl RequestId ===

impl RequestId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self::from_u128(rand::random::<u128>())
    }

    fn from_u128(n: u128) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 32];
        for (pair, byte) in out.chunks_exact_mut(2).zip(n.to_be_bytes()) {
            if let [hi, lo] = pair {
                *hi = HEX.get(usize::from(byte >> 4)).copied().unwrap_or(b'0');
                *lo = HEX.get(usize::from(byte & 0x0f)).copied().unwrap_or(b'0');
            }
        }
        Self(out)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // The buffer only ever holds ASCII hex digits.
        std::str::from_utf8(&self.0).unwrap_or("00000000000000000000000000000000")
    }

    /// The id as a header value.
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(self.as_str()).unwrap_or(HeaderValue::from_static("0"))
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl RequestContext ===

impl RequestContext {
    pub(crate) fn new(peer: SocketAddr, local: SocketAddr) -> Self {
        Self {
            request_id: RequestId::random(),
            peer,
            client_ip: peer.ip().to_canonical(),
            forwarded_chain: None,
            local,
            received_at: SystemTime::now(),
            caller: Caller::Anonymous,
            debug: false,
            rate_limits: None,
            app_quota: None,
            started: Instant::now(),
            tls: false,
            transport: Transport::Clear,
            api_metrics: None,
            upstream: None,
            traceparent: None,
            frontend_authorizer: None,
            backend_authorizer: None,
        }
    }
}

/// Unix milliseconds of a time (negative before the epoch, saturating).
pub(crate) fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// Formats a time as nginx's `$time_local` in UTC (`10/Feb/2023:07:33:44 +0000`), the shape APIG's
/// nginx-based gateway gives `$context.handleTime` (inferred; APIG does not document the format).
pub(crate) fn format_handle_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let month_name = MONTHS
        .get(usize::try_from(month.saturating_sub(1)).unwrap_or(0))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{day:02}/{month_name}/{year:04}:{:02}:{:02}:{:02} +0000",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month 1..=12, day 1..=31), Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn request_id_is_32_lowercase_hex() {
        let id = RequestId::random();
        assert_eq!(id.as_str().len(), 32);
        assert!(id
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_ne!(RequestId::random(), RequestId::random());
        assert_eq!(
            RequestId::from_u128(0xab).as_str(),
            "000000000000000000000000000000ab"
        );
    }

    #[test]
    fn unix_millis_both_sides_of_the_epoch() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_676_014_424_123);
        assert_eq!(unix_millis(t), 1_676_014_424_123);
        assert_eq!(unix_millis(SystemTime::UNIX_EPOCH), 0);
        let before = SystemTime::UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(unix_millis(before), -1500);
    }

    #[test]
    fn handle_time_is_nginx_time_local() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_676_014_424);
        assert_eq!(format_handle_time(t), "10/Feb/2023:07:33:44 +0000");
        assert_eq!(
            format_handle_time(SystemTime::UNIX_EPOCH),
            "01/Jan/1970:00:00:00 +0000"
        );
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_handle_time(leap), "29/Feb/2000:00:00:00 +0000");
    }
}
