//! Credential quotas (`/app-quotas`): at most `call_limits` calls by an app, across all APIs, per
//! `time_interval` × `time_unit`, in fixed windows aligned to `reset_time`.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::validate::{self, Problems};
use crate::ApiError;

#[derive(Deserialize, Default, Debug)]
pub struct QuotaSpec {
    pub name: Option<String>,
    pub call_limits: Option<i64>,
    pub time_unit: Option<String>,
    pub time_interval: Option<i64>,
    pub reset_time: Option<String>,
    pub remark: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Quota {
    pub id: String,
    pub name: String,
    pub call_limits: i64,
    pub time_unit: String,
    pub time_interval: i64,
    /// As given (normalised to `YYYY-MM-DD HH:MM:SS`, UTC), or empty.
    pub reset_time: String,
    pub remark: String,
    pub create_time: String,
}

/// An app bound to a quota (an app has at most one).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct QuotaBinding {
    pub app_id: String,
    pub app_quota_id: String,
    pub bound_time: String,
}

#[derive(Deserialize, Default, Debug)]
pub struct QuotaBindingCreate {
    pub app_ids: Option<Vec<String>>,
}

/// Parses APIG's `reset_time` (`YYYY-MM-DD HH:MM:SS`, taken as UTC) or an RFC 3339 instant.
pub fn parse_reset_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc())
}

impl QuotaSpec {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match validate::required("name", &self.name) {
            Ok(n) => p.check(validate::app_name(n)),
            Err(e) => p.push(e),
        }
        let in_range = |v: i64| (1..=i32::MAX as i64).contains(&v);
        match self.call_limits {
            Some(v) if in_range(v) => {}
            Some(_) => p.push(ApiError::invalid("call_limits", "1 to 2147483647")),
            None => p.push(ApiError::required("call_limits")),
        }
        match self.time_interval {
            Some(v) if in_range(v) => {}
            Some(_) => p.push(ApiError::invalid("time_interval", "1 to 2147483647")),
            None => p.push(ApiError::required("time_interval")),
        }
        match self.time_unit.as_deref() {
            Some(u) => p.check(validate::one_of(
                "time_unit",
                u,
                &["SECOND", "MINUTE", "HOUR", "DAY"],
            )),
            None => p.push(ApiError::required("time_unit")),
        }
        if let Some(r) = self.reset_time.as_deref().filter(|r| !r.is_empty()) {
            if parse_reset_time(r).is_none() {
                p.push(ApiError::invalid(
                    "reset_time",
                    "YYYY-MM-DD HH:MM:SS (UTC) or RFC 3339",
                ));
            }
        }
        if let Some(r) = &self.remark {
            p.check(validate::max_chars("remark", r, 255));
            if r.contains('<') || r.contains('>') {
                p.push(ApiError::invalid("remark", "< and > are not allowed"));
            }
        }
        p.into_result()
    }

    pub fn into_quota(self, id: String, create_time: String) -> Quota {
        let reset_time = self
            .reset_time
            .as_deref()
            .and_then(parse_reset_time)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        Quota {
            id,
            name: self.name.unwrap_or_default(),
            call_limits: self.call_limits.unwrap_or(1),
            time_unit: self.time_unit.unwrap_or_else(|| "SECOND".into()),
            time_interval: self.time_interval.unwrap_or(1),
            reset_time,
            remark: self.remark.unwrap_or_default(),
            create_time,
        }
    }
}

impl Quota {
    pub fn window_ms(&self) -> u64 {
        let unit: u64 = match self.time_unit.as_str() {
            "MINUTE" => 60_000,
            "HOUR" => 3_600_000,
            "DAY" => 86_400_000,
            _ => 1_000,
        };
        unit.saturating_mul(self.time_interval.max(1) as u64)
    }

    /// Where windows start: `reset_time`, or (APIG: the first call; a cluster has no single
    /// first call) the quota's creation.
    pub fn anchor_unix_ms(&self) -> i64 {
        parse_reset_time(&self.reset_time)
            .or_else(|| parse_reset_time(&self.create_time))
            .map_or(0, |t| t.timestamp_millis())
    }

    pub fn to_json(&self, bound: usize) -> serde_json::Value {
        serde_json::json!({
            "app_quota_id": self.id, "name": self.name, "call_limits": self.call_limits,
            "time_unit": self.time_unit, "time_interval": self.time_interval, "remark": self.remark,
            "reset_time": self.reset_time, "create_time": self.create_time, "bound_app_num": bound,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_times_and_windows() {
        assert!(parse_reset_time("2026-01-01 05:05:00").is_some());
        assert!(parse_reset_time("2026-01-01T05:05:00Z").is_some());
        assert!(parse_reset_time("yesterday").is_none());
        let spec = QuotaSpec {
            name: Some("daily".into()),
            call_limits: Some(100),
            time_unit: Some("HOUR".into()),
            time_interval: Some(2),
            reset_time: Some("2026-01-01T05:05:00+01:00".into()),
            remark: None,
        };
        assert!(spec.validate().is_ok());
        let q = spec.into_quota("q".into(), "2026-01-01T00:00:00Z".into());
        assert_eq!(q.reset_time, "2026-01-01 04:05:00");
        assert_eq!(q.window_ms(), 7_200_000);
        assert_eq!(
            q.anchor_unix_ms(),
            parse_reset_time("2026-01-01 04:05:00")
                .unwrap()
                .timestamp_millis()
        );
        let bad = QuotaSpec {
            name: Some("x".into()),
            remark: Some("<b>".into()),
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().message.contains("remark"));
    }
}
