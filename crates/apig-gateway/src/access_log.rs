//! The access log: one JSON line per request, written by a background task so the request path
//! never waits on I/O. Lines are handed over through a bounded queue; when the sink cannot keep
//! up, lines are dropped and counted (`apig_gateway_access_log_dropped_total`) rather than
//! slowing requests down or growing memory.
//!
//! A line: `{"time","request_id","api_id","env","app_id","client_ip","method","path","status",
//! "latency_ms","upstream_addr","upstream_status","upstream_latency_ms","error_code"}`.

use std::path::PathBuf;

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Lines waiting for the writer at most.
const QUEUE: usize = 8192;

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogSink {
    Stdout,
    Stderr,
    /// Appended to this file (created owner read-write, group read).
    File(PathBuf),
}

impl AccessLogSink {
    /// `stdout`, `stderr`, or a file path; `off` (or empty) is no access log.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "" | "off" => None,
            "stdout" | "-" => Some(Self::Stdout),
            "stderr" => Some(Self::Stderr),
            path => Some(Self::File(PathBuf::from(path))),
        }
    }
}

/// The handle requests log through.
#[derive(Clone)]
pub(crate) struct AccessLog {
    tx: Option<mpsc::Sender<String>>,
    metrics: Metrics,
}

impl AccessLog {
    /// Starts the writer for `sink` (none: logging is off).
    pub(crate) async fn start(
        sink: Option<&AccessLogSink>,
        metrics: Metrics,
    ) -> std::io::Result<Self> {
        let Some(sink) = sink else {
            return Ok(Self { tx: None, metrics });
        };
        let mut out: Box<dyn tokio::io::AsyncWrite + Send + Unpin> = match sink {
            AccessLogSink::Stdout => Box::new(tokio::io::stdout()),
            AccessLogSink::Stderr => Box::new(tokio::io::stderr()),
            AccessLogSink::File(path) => {
                let mut options = tokio::fs::OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                options.mode(0o640);
                Box::new(options.open(path).await?)
            }
        };
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        tokio::spawn(async move {
            while let Some(mut line) = rx.recv().await {
                line.push('\n');
                // Take whatever else is queued in one write.
                while let Ok(more) = rx.try_recv() {
                    line.push_str(&more);
                    line.push('\n');
                }
                if out.write_all(line.as_bytes()).await.is_err() || out.flush().await.is_err() {
                    tracing::error!("access log sink failed; access logging stops");
                    return;
                }
            }
        });
        Ok(Self {
            tx: Some(tx),
            metrics,
        })
    }

    /// No access log (tests, and the benchmarks' replica state in `bench_support`).
    pub(crate) fn disabled(metrics: Metrics) -> Self {
        Self { tx: None, metrics }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one line (dropped and counted when the queue is full).
    pub(crate) fn log(&self, line: String) {
        if let Some(tx) = &self.tx {
            if tx.try_send(line).is_err() {
                self.metrics.access_log_dropped.inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sinks() {
        assert_eq!(AccessLogSink::parse("off"), None);
        assert_eq!(AccessLogSink::parse(""), None);
        assert_eq!(AccessLogSink::parse("stdout"), Some(AccessLogSink::Stdout));
        assert_eq!(
            AccessLogSink::parse("/var/log/apig/access.log"),
            Some(AccessLogSink::File("/var/log/apig/access.log".into()))
        );
    }

    #[tokio::test]
    async fn lines_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let metrics = Arc::new(crate::metrics::GatewayMetrics::new().unwrap());
        let log = AccessLog::start(Some(&AccessLogSink::File(path.clone())), metrics)
            .await
            .unwrap();
        log.log("{\"a\":1}".into());
        log.log("{\"a\":2}".into());
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(text, "{\"a\":1}\n{\"a\":2}\n");
    }
}
