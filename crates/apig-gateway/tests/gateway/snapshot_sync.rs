//! The discovery stream against the fake control plane: readiness, ACK/NACK, last known good,
//! the cache across restarts, and authentication of the stream.

use std::time::Duration;

use crate::harness::*;

fn cache_file(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join(format!("snapshot-{INSTANCE}.bin"))
}

#[tokio::test]
async fn not_ready_until_a_snapshot_then_ready_and_routing() {
    bounded(async {
        let cp = FakeControlPlane::start(TOKEN).await;
        let backend = EchoBackend::start().await;
        let cache = tempfile::tempdir().unwrap();
        let gw = RunningGateway::start(config(&cp.url(), cache.path(), TOKEN)).await;

        assert!(eventually(Duration::from_secs(5), || !cp.hellos().is_empty()).await);
        let hello = cp.hellos()[0].clone();
        assert_eq!(hello.instance_id, INSTANCE);
        assert_eq!(hello.node_id, "test-node");
        assert_eq!(hello.applied_version, 0);
        assert_eq!(hello.applied_epoch, "");
        assert!(!hello.gateway_version.is_empty());

        assert_eq!(gw.ready_status().await, 503);
        let health = get(gw.admin, "/health", &[]).await;
        assert_eq!(health.status, 200);
        assert_eq!(health.json()["status"], "ok");
        call(gw.addr, "/a")
            .await
            .assert_apig_error(503, "APIG.0606");

        cp.push(snapshot(
            "epoch-1",
            1,
            vec![with_http(api("a", "GET", "/a"), backend.addr, "/a", 5_000)],
        ));
        assert_eq!(cp.answer(1).await, Ok(()));
        gw.wait_ready().await;
        let ready = get(gw.admin, "/ready", &[]).await.json();
        assert_eq!(ready["applied_epoch"], "epoch-1");
        assert_eq!(ready["applied_version"], 1);
        assert_eq!(ready["control_plane_connected"], true);
        assert_eq!(call(gw.addr, "/a").await.status, 200);

        // The cache file is written, private.
        let path = cache_file(cache.path());
        assert!(eventually(Duration::from_secs(5), || path.exists()).await);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        gw.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn bad_and_older_snapshots_are_nacked_and_the_old_routes_stay() {
    bounded(async {
        let stack =
            Stack::start(|backend| vec![with_http(api("a", "GET", "/a"), backend, "/a", 5_000)])
                .await;
        let (cp, addr, backend) = (&stack.cp, stack.gw.addr, stack.backend.addr);

        // Version 2 does not compile (invalid path template).
        cp.push(snapshot(
            "epoch-1",
            2,
            vec![with_http(
                api("b", "GET", "no-leading-slash"),
                backend,
                "/b",
                5_000,
            )],
        ));
        let reason = cp.answer(2).await.unwrap_err();
        assert!(reason.contains("route table"), "{reason}");
        assert_eq!(call(addr, "/a").await.status, 200);

        // Version 3 does not prepare (unknown backend scheme).
        let mut bad_backend = with_http(api("c", "GET", "/c"), backend, "/c", 5_000);
        if let Some(apig_proto::api::Backend::Http(h)) = bad_backend.backend.as_mut() {
            h.scheme = "gopher".into();
        }
        cp.push(snapshot("epoch-1", 3, vec![bad_backend]));
        let reason = cp.answer(3).await.unwrap_err();
        assert!(reason.contains("scheme"), "{reason}");
        assert_eq!(call(addr, "/a").await.status, 200);

        // Version 4 is good: /b replaces /a.
        cp.push(snapshot(
            "epoch-1",
            4,
            vec![with_http(api("b", "GET", "/b"), backend, "/b", 5_000)],
        ));
        assert_eq!(cp.answer(4).await, Ok(()));
        assert_eq!(call(addr, "/b").await.status, 200);
        call(addr, "/a").await.assert_apig_error(404, "APIG.0101");

        // An older version is refused even though it is valid.
        cp.push(snapshot(
            "epoch-1",
            3,
            vec![with_http(api("a", "GET", "/a"), backend, "/a", 5_000)],
        ));
        // Version 3 was already NACKed once; wait for the second answer.
        assert!(eventually(Duration::from_secs(5), || cp.nack_reasons(3).len() >= 2).await);
        let reason = cp.nack_reasons(3)[1].clone();
        assert!(reason.contains("older"), "{reason}");
        assert_eq!(call(addr, "/b").await.status, 200);
        call(addr, "/a").await.assert_apig_error(404, "APIG.0101");

        // Another instance's snapshot is refused.
        let mut other = snapshot("epoch-1", 9, vec![]);
        other.instance_id = "someone-else".into();
        cp.push(other);
        let reason = cp.answer(9).await.unwrap_err();
        assert!(reason.contains("instance"), "{reason}");
        assert_eq!(call(addr, "/b").await.status, 200);

        let ready = get(stack.gw.admin, "/ready", &[]).await.json();
        assert_eq!(ready["applied_version"], 4);
    })
    .await;
}

#[tokio::test]
async fn empty_snapshot_from_a_new_epoch_is_refused() {
    bounded(async {
        let stack =
            Stack::start(|backend| vec![with_http(api("a", "GET", "/a"), backend, "/a", 5_000)])
                .await;
        let (cp, addr) = (&stack.cp, stack.gw.addr);
        cp.push(snapshot("epoch-2", 1, vec![]));
        // epoch-2 v1 shares version 1 with the applied epoch-1 v1: look for the NACK.
        assert!(eventually(Duration::from_secs(5), || !cp.nack_reasons(1).is_empty()).await);
        let reason = cp.nack_reasons(1)[0].clone();
        assert!(reason.contains("empty snapshot"), "{reason}");
        assert_eq!(call(addr, "/a").await.status, 200);

        // Within the applied epoch, removing everything is a normal publish.
        cp.push(snapshot("epoch-1", 2, vec![]));
        assert_eq!(cp.answer(2).await, Ok(()));
        call(addr, "/a").await.assert_apig_error(404, "APIG.0101");
        assert_eq!(stack.gw.ready_status().await, 200);
    })
    .await;
}

#[tokio::test]
async fn in_flight_requests_finish_on_the_old_snapshot() {
    bounded(async {
        let stack = Stack::start(|backend| {
            vec![with_http(
                api("s", "GET", "/slow"),
                backend,
                "/slow",
                10_000,
            )]
        })
        .await;
        let addr = stack.gw.addr;
        let in_flight = tokio::spawn(async move { call(addr, "/slow").await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        stack.cp.push(snapshot("epoch-1", 2, vec![]));
        assert_eq!(stack.cp.answer(2).await, Ok(()));
        call(addr, "/slow")
            .await
            .assert_apig_error(404, "APIG.0101");
        let answer = in_flight.await.unwrap();
        assert_eq!(answer.status, 200);
    })
    .await;
}

#[tokio::test]
async fn restart_serves_the_cache_without_a_control_plane() {
    bounded(async {
        let stack = Stack::start(|backend| {
            vec![with_http(api("a", "GET", "/a"), backend, "/cached", 5_000)]
        })
        .await;
        let cache_dir = stack.cache.path().to_path_buf();
        assert!(eventually(Duration::from_secs(5), || cache_file(&cache_dir).exists()).await);
        let Stack {
            cp,
            backend,
            gw,
            cache,
        } = stack;
        gw.stop().await.unwrap();
        drop(cp);

        // Nothing listens on port 1: the control plane is unreachable.
        let gw = RunningGateway::start(config("http://127.0.0.1:1", cache.path(), TOKEN)).await;
        assert_eq!(gw.ready_status().await, 200);
        let ready = get(gw.admin, "/ready", &[]).await.json();
        assert_eq!(ready["applied_version"], 1);
        assert_eq!(ready["control_plane_connected"], false);
        assert_eq!(call(gw.addr, "/a").await.json()["path"], "/cached");
        gw.stop().await.unwrap();

        // Back with a control plane: the Hello reports what the cache holds.
        let cp = FakeControlPlane::start(TOKEN).await;
        let gw = RunningGateway::start(config(&cp.url(), cache.path(), TOKEN)).await;
        assert!(eventually(Duration::from_secs(5), || !cp.hellos().is_empty()).await);
        let hello = cp.hellos()[0].clone();
        assert_eq!(hello.applied_epoch, "epoch-1");
        assert_eq!(hello.applied_version, 1);
        assert_eq!(call(gw.addr, "/a").await.status, 200);
        drop(backend);
    })
    .await;
}

#[tokio::test]
async fn corrupt_cache_is_ignored_and_not_ready() {
    bounded(async {
        let cache = tempfile::tempdir().unwrap();
        std::fs::write(
            cache_file(cache.path()),
            b"APIGSNAP garbage that is not a snapshot",
        )
        .unwrap();
        let gw = RunningGateway::start(config("http://127.0.0.1:1", cache.path(), TOKEN)).await;
        assert_eq!(gw.ready_status().await, 503);
        let ready = get(gw.admin, "/ready", &[]).await.json();
        assert_eq!(ready["ready"], false);
        call(gw.addr, "/a")
            .await
            .assert_apig_error(503, "APIG.0606");

        // A cache of another instance is ignored as well.
        let other = tempfile::tempdir().unwrap();
        {
            let cp = FakeControlPlane::start(TOKEN).await;
            let mut cfg = config(&cp.url(), other.path(), TOKEN);
            cfg.instance_id = "other-instance".into();
            let mut s = snapshot(
                "epoch-1",
                1,
                vec![with_mock(api("a", "GET", "/a"), 200, "x")],
            );
            s.instance_id = "other-instance".into();
            cp.push(s);
            let gw_other = RunningGateway::start(cfg).await;
            assert_eq!(cp.answer(1).await, Ok(()));
            gw_other.stop().await.unwrap();
        }
        std::fs::rename(
            other.path().join("snapshot-other-instance.bin"),
            cache_file(other.path()),
        )
        .unwrap();
        let gw2 = RunningGateway::start(config("http://127.0.0.1:1", other.path(), TOKEN)).await;
        assert_eq!(gw2.ready_status().await, 503);
        gw.stop().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn wrong_cluster_token_keeps_retrying_and_stays_not_ready() {
    bounded(async {
        let cp = FakeControlPlane::start(TOKEN).await;
        cp.push(snapshot(
            "epoch-1",
            1,
            vec![with_mock(api("a", "GET", "/a"), 200, "x")],
        ));
        let cache = tempfile::tempdir().unwrap();
        let gw = RunningGateway::start(config(&cp.url(), cache.path(), "wrong-token")).await;
        assert!(
            eventually(Duration::from_secs(10), || cp.unauthenticated() >= 3).await,
            "attempts: {}",
            cp.attempts()
        );
        assert!(cp.hellos().is_empty());
        assert_eq!(gw.ready_status().await, 503);
        call(gw.addr, "/a")
            .await
            .assert_apig_error(503, "APIG.0606");
        gw.stop().await.unwrap();
    })
    .await;
}
