//! Usage reports on the discovery stream: calls counted per API and minute, one report in flight
//! at a time, re-sent unchanged on a new stream until the control plane acknowledges it.

use std::time::Duration;

use apig_proto::UsageReport;

use crate::harness::*;

/// Calls of `api` in a report, over its minutes.
fn calls(report: &UsageReport, api: &str) -> u64 {
    report
        .entries
        .iter()
        .filter(|e| e.api_id == api)
        .map(|e| e.requests)
        .sum()
}

#[tokio::test]
async fn usage_reports_are_resent_until_acknowledged() {
    bounded(async {
        let cp = FakeControlPlane::start(TOKEN).await;
        let backend = EchoBackend::start().await;
        let cache = tempfile::tempdir().unwrap();
        let mut cfg = config(&cp.url(), cache.path(), TOKEN);
        cfg.limits.usage_report_interval = Duration::from_millis(50);
        let gw = RunningGateway::start(cfg).await;
        cp.push(snapshot(
            "epoch-1",
            1,
            vec![
                with_http(api("a", "GET", "/a"), backend.addr, "/a", 5_000),
                with_mock(api("m", "GET", "/m"), 503, "down"),
            ],
        ));
        assert_eq!(cp.answer(1).await, Ok(()));
        gw.wait_ready().await;

        cp.withhold_usage_acks(true);
        for _ in 0..3 {
            assert_eq!(call(gw.addr, "/a").await.status, 200);
        }
        assert_eq!(call(gw.addr, "/m").await.status, 503);
        call(gw.addr, "/nowhere")
            .await
            .assert_apig_error(404, "APIG.0101");
        assert!(eventually(Duration::from_secs(5), || !cp.usage_reports().is_empty()).await);
        let first = cp.usage_reports()[0].clone();
        assert_eq!(first.seq, 1);
        assert_eq!(first.replica_epoch.len(), 32);

        // While it waits for its acknowledgement, no other report goes.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(cp.usage_reports().len(), 1);

        // A new stream gets the same report again, unchanged.
        cp.drop_streams();
        assert!(eventually(Duration::from_secs(10), || cp.usage_reports().len() >= 2).await);
        assert_eq!(cp.usage_reports()[1], first);

        // Acknowledged, the rest follows; each report counts once however often it was sent.
        cp.withhold_usage_acks(false);
        cp.drop_streams();
        for _ in 0..2 {
            assert_eq!(call(gw.addr, "/a").await.status, 200);
        }
        let counted = |api: &str| {
            let mut seen = std::collections::BTreeMap::new();
            for r in cp.usage_reports() {
                assert_eq!(r.replica_epoch, first.replica_epoch);
                if let Some(before) = seen.insert(r.seq, r.clone()) {
                    assert_eq!(before, r, "a re-sent report changed");
                }
            }
            seen.values().map(|r| calls(r, api)).sum::<u64>()
        };
        assert!(
            eventually(Duration::from_secs(10), || counted("a") == 5
                && counted("m") == 1
                && counted("") == 1)
            .await,
            "{:?}",
            cp.usage_reports()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!((counted("a"), counted("m"), counted("")), (5, 1, 1));

        let entries: Vec<_> = cp
            .usage_reports()
            .into_iter()
            .flat_map(|r| r.entries)
            .collect();
        for e in &entries {
            assert_eq!(e.minute % 60, 0);
        }
        let mock = entries.iter().find(|e| e.api_id == "m").unwrap();
        assert_eq!((mock.requests, mock.status_5xx), (1, 1));
        assert_eq!(mock.backend_latency_us_sum, 0, "a mock is not a backend");
        assert!(mock.client_bytes_out > 0 && mock.latency_us_max > 0);
        let a = entries.iter().find(|e| e.api_id == "a").unwrap();
        assert_eq!(a.status_2xx, a.requests);
        assert!(a.backend_latency_us_sum > 0 && a.backend_bytes_in == a.client_bytes_out);
        gw.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_stopping_replica_delivers_its_last_usage() {
    bounded(async {
        let cp = FakeControlPlane::start(TOKEN).await;
        let backend = EchoBackend::start().await;
        let cache = tempfile::tempdir().unwrap();
        let mut cfg = config(&cp.url(), cache.path(), TOKEN);
        // No periodic reading during the test (only minute boundaries).
        cfg.limits.usage_report_interval = Duration::from_secs(3600);
        let gw = RunningGateway::start(cfg).await;
        cp.push(snapshot(
            "epoch-1",
            1,
            vec![with_http(api("a", "GET", "/a"), backend.addr, "/a", 5_000)],
        ));
        assert_eq!(cp.answer(1).await, Ok(()));
        gw.wait_ready().await;
        for _ in 0..4 {
            assert_eq!(call(gw.addr, "/a").await.status, 200);
        }
        gw.stop().await.unwrap();
        let total: u64 = cp.usage_reports().iter().map(|r| calls(r, "a")).sum();
        assert_eq!(total, 4, "{:?}", cp.usage_reports());
    })
    .await;
}
