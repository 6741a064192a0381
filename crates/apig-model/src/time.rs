//! Timestamps as the APIG API writes them (`2024-01-01T00:00:00Z`).

use chrono::{SecondsFormat, Utc};

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn now_unix_ms() -> i64 {
    Utc::now().timestamp_millis()
}
