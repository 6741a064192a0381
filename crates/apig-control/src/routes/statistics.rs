//! APIG's monitoring queries, answered from the traffic the replicas report (`usage.rs`):
//!
//! - `GET .../statistics/api/latest?api_id=&duration=` (ListLatelyApiStatisticsV2): one API's
//!   calls per minute over the last `duration` (`1m` to `60m`, or `1h`);
//! - `GET .../statistics/group/latest?group_id=` (ListLatelyGroupStatisticsV2): the calls of a
//!   group's APIs per minute over the last hour;
//! - `GET .../metric-data?dim=&metric_name=&from=&to=&period=&filter=` (ListMetricData): the
//!   instance's traffic, rolled up per `period`.
//!
//! Minutes are UTC; `req_time` and `register_time` are written `YYYY-MM-DD HH:MM:SS` in UTC.
//! Only minutes with calls are listed. Statistics are kept in memory by the control plane and
//! start afresh when it restarts.

use std::collections::HashMap;
use std::sync::Arc;

use apig_model::ApiError;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{json, Value};

use super::{ok, Params, Result};
use crate::usage::{minute_of, Counts, Traffic};
use crate::ControlState;

/// Minutes the group query covers (APIG: "in the last one hour").
const GROUP_MINUTES: i64 = 60;
/// The `period`s APIG accepts, in seconds.
const PERIODS: [i64; 6] = [1, 300, 1200, 3600, 14_400, 86_400];

fn required<'a>(
    q: &'a HashMap<String, String>,
    name: &str,
) -> std::result::Result<&'a str, ApiError> {
    q.get(name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::required(name))
}

/// `Nm` (1 to 60) or `1h`, in minutes.
fn duration_minutes(v: &str) -> std::result::Result<i64, ApiError> {
    let bad = || ApiError::invalid("duration", "It must be 1m to 60m, or 1h.");
    let number = |digits: &str| -> Option<i64> {
        if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    if let Some(n) = v.strip_suffix('m').and_then(number) {
        if (1..=60).contains(&n) {
            return Ok(n);
        }
    }
    if v.strip_suffix('h').and_then(number) == Some(1) {
        return Ok(60);
    }
    Err(bad())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a unix time in seconds.
fn datetime(unix_s: i64) -> String {
    chrono::DateTime::from_timestamp(unix_s, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Milliseconds, two decimals, of `sum_us` spread over `n` calls.
fn avg_ms(sum_us: u64, n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let ms = sum_us as f64 / n as f64 / 1000.0;
    (ms * 100.0).round() / 100.0
}

/// Whole milliseconds, rounded up (a call that took any time shows at least 1 ms).
fn max_ms(us: u64) -> u64 {
    us.div_ceil(1000)
}

/// The fields StatisticsAPI and StatisticsGroup share.
fn common(minute: i64, c: &Counts, group: &str, provider: &str) -> serde_json::Map<String, Value> {
    let v = json!({
        "max_latency": max_ms(c.latency_us_max),
        "avg_latency": avg_ms(c.latency_us_sum, c.requests),
        "req_count": c.requests,
        "req_count2xx": c.status_2xx,
        "req_count4xx": c.status_4xx,
        "req_count5xx": c.status_5xx,
        "req_count_error": c.status_4xx.saturating_add(c.status_5xx),
        "output_throughput": c.bytes_out,
        "input_throughput": c.bytes_in,
        "current_minute": minute,
        "group_id": group,
        "provider": provider,
        "req_time": datetime(minute),
        "register_time": datetime(c.updated_ms.div_euclid(1000)),
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// `[start, end]`: the minutes of the last `minutes` minutes, the current one included.
fn window(minutes: i64) -> (i64, i64) {
    let end = minute_of(apig_model::time::now_unix_ms().div_euclid(1000));
    (end - (minutes - 1) * 60, end)
}

fn answer(start: i64, end: i64, list: Vec<Value>) -> Response {
    ok(json!({
        "code": "APIG.0000",
        "msg": "Successful",
        "start_time": start,
        "end_time": end,
        "list": list,
    }))
}

/// ListLatelyApiStatisticsV2.
pub async fn api_latest(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let api_id = required(&q, "api_id")?;
    let minutes = duration_minutes(required(&q, "duration")?)?;
    let api = super::apis::load(s.reader(), &inst, api_id)?;
    let (start, end) = window(minutes);
    let list = s
        .usage
        .api_minutes(&inst, api_id, start, end)
        .into_iter()
        .map(|(minute, c)| {
            let mut m = common(minute, &c, api.spec.group_id(), &project);
            let inner_sum = c.latency_us_sum.saturating_sub(c.backend_latency_us_sum);
            m.insert("api_id".into(), api_id.into());
            m.insert("cycle".into(), "MINUTE".into());
            m.insert("status".into(), 1.into());
            m.insert(
                "max_inner_latency".into(),
                max_ms(c.inner_latency_us_max).into(),
            );
            m.insert(
                "avg_inner_latency".into(),
                avg_ms(inner_sum, c.requests).into(),
            );
            m.insert(
                "max_backend_latency".into(),
                max_ms(c.backend_latency_us_max).into(),
            );
            m.insert(
                "avg_backend_latency".into(),
                avg_ms(c.backend_latency_us_sum, c.requests).into(),
            );
            Value::Object(m)
        })
        .collect();
    Ok(answer(start, end, list))
}

/// ListLatelyGroupStatisticsV2.
pub async fn group_latest(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let group_id = required(&q, "group_id")?;
    super::groups::load(s.reader(), &inst, group_id)?;
    let (start, end) = window(GROUP_MINUTES);
    let list = s
        .usage
        .group_minutes(&inst, group_id, start, end)
        .into_iter()
        .map(|(minute, c)| Value::Object(common(minute, &c, group_id, &project)))
        .collect();
    Ok(answer(start, end, list))
}

/// Which side of the gateway a `dim` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dim {
    /// Clients ↔ gateway.
    Inbound,
    /// Gateway ↔ backends.
    Outbound,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metric {
    /// Bytes leaving the gateway on that side, per minute.
    UpStream,
    DownStream,
    /// The same as bits per second.
    UpBandwidth,
    DownBandwidth,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filter {
    Average,
    Max,
    Min,
    Sum,
    Variance,
}

struct MetricQuery {
    dim: Dim,
    metric: Metric,
    from_ms: i64,
    to_ms: i64,
    period: i64,
    filter: Filter,
}

fn metric_query(q: &HashMap<String, String>) -> std::result::Result<MetricQuery, ApiError> {
    let dim = match required(q, "dim")? {
        "inbound_eip" => Dim::Inbound,
        "outbound_eip" => Dim::Outbound,
        _ => {
            return Err(ApiError::invalid(
                "dim",
                "It must be inbound_eip or outbound_eip.",
            ))
        }
    };
    let metric = match required(q, "metric_name")? {
        "up_stream" => Metric::UpStream,
        "down_stream" => Metric::DownStream,
        "upstream_bandwidth" => Metric::UpBandwidth,
        "downstream_bandwidth" => Metric::DownBandwidth,
        "upstream_bandwidth_usage" | "downstream_bandwidth_usage" => {
            return Err(ApiError::not_supported(
                "Bandwidth usage (a self-hosted gateway has no purchased bandwidth to compare with)",
            ))
        }
        _ => {
            return Err(ApiError::invalid(
                "metric_name",
                "It must be upstream_bandwidth, downstream_bandwidth, upstream_bandwidth_usage, \
                 downstream_bandwidth_usage, up_stream or down_stream.",
            ))
        }
    };
    let millis = |name: &str| -> std::result::Result<i64, ApiError> {
        required(q, name)?
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .ok_or_else(|| ApiError::invalid(name, "It must be a UNIX timestamp in milliseconds."))
    };
    let from_ms = millis("from")?;
    let to_ms = millis("to")?;
    if from_ms >= to_ms {
        return Err(ApiError::invalid("to", "It must be later than from."));
    }
    let period = required(q, "period")?
        .parse::<i64>()
        .ok()
        .filter(|p| PERIODS.contains(p))
        .ok_or_else(|| {
            ApiError::invalid("period", "It must be 1, 300, 1200, 3600, 14400 or 86400.")
        })?;
    let filter = match required(q, "filter")? {
        "average" => Filter::Average,
        "max" => Filter::Max,
        "min" => Filter::Min,
        "sum" => Filter::Sum,
        "variance" => Filter::Variance,
        _ => {
            return Err(ApiError::invalid(
                "filter",
                "It must be average, max, min, sum or variance.",
            ))
        }
    };
    Ok(MetricQuery {
        dim,
        metric,
        from_ms,
        to_ms,
        period,
        filter,
    })
}

impl MetricQuery {
    /// The minute's sample of this metric.
    fn sample(&self, t: &Traffic) -> u64 {
        let (up, down) = match self.dim {
            // Up: what leaves the gateway towards that side.
            Dim::Inbound => (t.client_out, t.client_in),
            Dim::Outbound => (t.backend_out, t.backend_in),
        };
        match self.metric {
            Metric::UpStream => up,
            Metric::DownStream => down,
            Metric::UpBandwidth => up.saturating_mul(8) / 60,
            Metric::DownBandwidth => down.saturating_mul(8) / 60,
        }
    }

    fn unit(&self) -> &'static str {
        match self.metric {
            Metric::UpStream | Metric::DownStream => "Byte",
            Metric::UpBandwidth | Metric::DownBandwidth => "bit/s",
        }
    }

    fn rollup(&self, samples: &[u64]) -> u64 {
        let n = samples.len().max(1) as u128;
        let sum: u128 = samples.iter().map(|v| u128::from(*v)).sum();
        let value = match self.filter {
            Filter::Sum => sum,
            Filter::Max => samples.iter().copied().max().map_or(0, u128::from),
            Filter::Min => samples.iter().copied().min().map_or(0, u128::from),
            Filter::Average => (sum + n / 2) / n,
            Filter::Variance => {
                let mean = sum as f64 / n as f64;
                let var = samples
                    .iter()
                    .map(|v| (*v as f64 - mean).powi(2))
                    .sum::<f64>()
                    / n as f64;
                var.round() as u128
            }
        };
        u64::try_from(value).unwrap_or(u64::MAX)
    }

    fn filter_name(&self) -> &'static str {
        match self.filter {
            Filter::Average => "average",
            Filter::Max => "max",
            Filter::Min => "min",
            Filter::Sum => "sum",
            Filter::Variance => "variance",
        }
    }
}

/// ListMetricData. The samples are the instance's minutes (body bytes of every call, including
/// calls that matched no API); a minute without calls since the control plane started
/// collecting counts as 0. `period` 1 (real time) answers one point per minute; longer periods
/// roll the minutes up in buckets aligned to multiples of the period. `inbound_eip` measures
/// clients ↔ gateway, `outbound_eip` gateway ↔ backends; `up` is what the gateway sends on
/// that side. Usage metrics need a purchased bandwidth and are not supported.
pub async fn metric_data(
    State(s): State<Arc<ControlState>>,
    Path((project, inst)): Path<(String, String)>,
    q: Params,
) -> Result<Response> {
    s.instance(s.reader(), &project, &inst)?;
    let query = metric_query(&q)?;
    let now_minute = minute_of(apig_model::time::now_unix_ms().div_euclid(1000));
    let retention = s.usage.limits().traffic_minutes;
    let first = minute_of(query.from_ms.div_euclid(1000)).max(now_minute - (retention - 1) * 60);
    // `to` is exclusive: a minute counts when it starts before it.
    let last = minute_of((query.to_ms - 1).div_euclid(1000)).min(now_minute);
    let (since, traffic) = s.usage.traffic(&inst, first, last);
    let mut datapoints = Vec::new();
    if let Some(since) = since {
        let first = first.max(since);
        let by_minute: HashMap<i64, Traffic> = traffic.into_iter().collect();
        let bucket_len = if query.period == 1 { 60 } else { query.period };
        // Bucket start → its minutes' samples (zero where nothing was reported).
        let mut buckets: Vec<(i64, Vec<u64>)> = Vec::new();
        let mut minute = first;
        while minute <= last {
            let bucket = minute - minute.rem_euclid(bucket_len);
            let sample = by_minute.get(&minute).map_or(0, |t| query.sample(t));
            match buckets.last_mut() {
                Some((b, samples)) if *b == bucket => samples.push(sample),
                _ => buckets.push((bucket, vec![sample])),
            }
            minute += 60;
        }
        for (bucket, samples) in buckets {
            let mut point = serde_json::Map::new();
            point.insert(query.filter_name().into(), query.rollup(&samples).into());
            point.insert("timestamp".into(), bucket.saturating_mul(1000).into());
            point.insert("unit".into(), query.unit().into());
            datapoints.push(Value::Object(point));
        }
    }
    Ok(ok(json!({ "datapoints": datapoints })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_apig_writes_them() {
        assert_eq!(duration_minutes("1m").unwrap(), 1);
        assert_eq!(duration_minutes("60m").unwrap(), 60);
        assert_eq!(duration_minutes("1h").unwrap(), 60);
        for bad in [
            "", "m", "0m", "61m", "2h", "1d", "-1m", "1", "1M", "01x", "9999m", "１m", "1é", "é",
        ] {
            let e = duration_minutes(bad).unwrap_err();
            assert_eq!(e.code.code(), "APIG.2012", "{bad}");
        }
    }

    fn query(pairs: &[(&str, &str)]) -> std::result::Result<MetricQuery, ApiError> {
        let mut q: HashMap<String, String> = [
            ("dim", "inbound_eip"),
            ("metric_name", "up_stream"),
            ("from", "1000"),
            ("to", "2000"),
            ("period", "300"),
            ("filter", "sum"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in pairs {
            if v.is_empty() {
                q.remove(*k);
            } else {
                q.insert((*k).to_owned(), (*v).to_owned());
            }
        }
        metric_query(&q)
    }

    #[test]
    fn metric_queries_are_checked() {
        assert!(query(&[]).is_ok());
        for (pairs, code) in [
            (vec![("dim", "")], "APIG.2001"),
            (vec![("dim", "eip")], "APIG.2012"),
            (vec![("metric_name", "cpu")], "APIG.2012"),
            (
                vec![("metric_name", "upstream_bandwidth_usage")],
                "APIG.3458",
            ),
            (vec![("from", "x")], "APIG.2012"),
            (vec![("from", "-5")], "APIG.2012"),
            (vec![("from", "2000")], "APIG.2012"),
            (vec![("to", "")], "APIG.2001"),
            (vec![("period", "60")], "APIG.2012"),
            (vec![("filter", "median")], "APIG.2012"),
        ] {
            let e = query(&pairs)
                .err()
                .unwrap_or_else(|| panic!("{pairs:?} accepted"));
            assert_eq!(e.code.code(), code, "{pairs:?}");
        }
    }

    #[test]
    fn rollups() {
        let q = query(&[]).unwrap();
        let samples = [1, 2, 3, 6];
        let with = |f| MetricQuery {
            filter: f,
            ..query(&[]).unwrap()
        };
        assert_eq!(q.rollup(&samples), 12);
        assert_eq!(with(Filter::Average).rollup(&samples), 3);
        assert_eq!(with(Filter::Max).rollup(&samples), 6);
        assert_eq!(with(Filter::Min).rollup(&samples), 1);
        // mean 3: (4 + 1 + 0 + 9) / 4
        assert_eq!(with(Filter::Variance).rollup(&samples), 4);
        let t = Traffic {
            client_in: 60,
            client_out: 600,
            backend_out: 6,
            backend_in: 6000,
        };
        assert_eq!(q.sample(&t), 600);
        let down_bw = MetricQuery {
            dim: Dim::Outbound,
            metric: Metric::DownBandwidth,
            ..query(&[]).unwrap()
        };
        assert_eq!(down_bw.sample(&t), 800);
        assert_eq!(max_ms(1), 1);
        assert_eq!(max_ms(2000), 2);
        assert_eq!(avg_ms(3000, 2), 1.5);
        assert_eq!(avg_ms(5, 0), 0.0);
        assert_eq!(datetime(1_595_576_640), "2020-07-24 07:44:00");
    }
}
