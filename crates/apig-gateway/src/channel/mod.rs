//! Load-balance channels on the data plane.
//!
//! A snapshot's channels are prepared with the runtime ([`PreparedChannel`]: member addresses
//! and the balancer, immutable). Their live side ([`ChannelSet`]: each member's health and
//! in-flight count, and the active health-check tasks) is built with every `Serving` and carries
//! over from the previous one: a member keeps its health while its channel, id and address are
//! the same, and a check task keeps running while its channel's check and members are the same.
//! A task is stopped when no `Serving` uses it any more.

pub(crate) mod balance;
pub(crate) mod health;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use apig_proto::{BalanceStrategy, HealthProtocol};
use http::uri::Authority;

use crate::egress::AddressGuard;
use crate::metrics::GatewayMetrics;
use balance::{Balancer, HashKey, Slot, Strategy};
use health::{CheckSpec, MemberHealth, Probe, Target, Thresholds};

/// A member's address, prepared.
#[derive(Debug, Clone)]
pub(crate) struct PreparedMember {
    pub id: String,
    pub host: String,
    pub port: u16,
    /// `host:port` (IPv6 in brackets): the backend URI's authority.
    pub authority: Authority,
}

/// One channel of a snapshot, prepared.
#[derive(Debug)]
pub(crate) struct PreparedChannel {
    pub id: String,
    pub name: String,
    pub strategy: Strategy,
    pub members: Vec<PreparedMember>,
    pub balancer: Balancer,
    pub check: Option<CheckSpec>,
}

impl PreparedChannel {
    pub(crate) fn prepare(c: &apig_proto::Channel) -> Result<Self, String> {
        let strategy = match BalanceStrategy::try_from(c.strategy) {
            Ok(BalanceStrategy::Wrr) => Strategy::RoundRobin,
            Ok(BalanceStrategy::Wlc) => Strategy::LeastRequests,
            Ok(BalanceStrategy::SourceIp) => Strategy::SourceIpHash,
            Ok(BalanceStrategy::Uri) => Strategy::UriHash,
            Err(_) => return Err(format!("unknown balance strategy {}", c.strategy)),
        };
        let mut members = Vec::with_capacity(c.members.len());
        for m in &c.members {
            let port = u16::try_from(m.port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("member {} has port {}", m.id, m.port))?;
            if m.host.is_empty() || m.host.contains(['/', '@', '?', '#', ' ']) {
                return Err(format!("member {} has an invalid host", m.id));
            }
            let host = if m.host.contains(':') && !m.host.starts_with('[') {
                format!("[{}]", m.host)
            } else {
                m.host.clone()
            };
            let authority = Authority::try_from(format!("{host}:{port}").as_str())
                .map_err(|e| format!("member {}: invalid address: {e}", m.id))?;
            members.push(PreparedMember {
                id: m.id.clone(),
                host: m.host.clone(),
                port,
                authority,
            });
        }
        let slots: Vec<Slot<'_>> = c
            .members
            .iter()
            .map(|m| Slot {
                id: &m.id,
                weight: m.weight,
                backup: m.backup,
            })
            .collect();
        let balancer = Balancer::new(strategy, &slots);
        let check = c.health.as_ref().map(prepare_check).transpose()?;
        Ok(Self {
            id: c.id.clone(),
            name: c.name.clone(),
            strategy,
            members,
            balancer,
            check,
        })
    }

    /// Picks a member for a request: usable by `live`'s health, not in `tried`. `None`: no
    /// member can take it (APIG.0610).
    pub(crate) fn pick(
        &self,
        live: &LiveChannel,
        key: HashKey<'_>,
        tried: &[usize],
        now_ms: i64,
    ) -> Option<usize> {
        self.balancer.pick(
            key,
            |i| !tried.contains(&i) && live.health.get(i).is_some_and(|h| h.is_usable(now_ms)),
            |i| live.health.get(i).map_or(0, |h| h.in_flight()),
        )
    }
}

fn prepare_check(h: &apig_proto::HealthCheck) -> Result<CheckSpec, String> {
    let probe = match HealthProtocol::try_from(h.protocol) {
        Ok(HealthProtocol::Tcp) => Probe::Tcp,
        Ok(protocol @ (HealthProtocol::Http | HealthProtocol::Https)) => Probe::Http {
            tls: protocol == HealthProtocol::Https,
            method: if h.method.eq_ignore_ascii_case("HEAD") {
                "HEAD"
            } else {
                "GET"
            },
            path: if h.path.starts_with('/') && h.path.bytes().all(|b| b.is_ascii_graphic()) {
                h.path.clone()
            } else {
                return Err(format!("invalid health check path {:?}", h.path));
            },
            accepted: h
                .accepted
                .iter()
                .map(|r| {
                    Ok((
                        u16::try_from(r.from).map_err(|_| "status out of range")?,
                        u16::try_from(r.to).map_err(|_| "status out of range")?,
                    ))
                })
                .collect::<Result<_, &str>>()?,
        },
        Err(_) => return Err(format!("unknown health check protocol {}", h.protocol)),
    };
    if h.interval_ms == 0 || h.timeout_ms == 0 {
        return Err("health check interval and timeout must be positive".into());
    }
    Ok(CheckSpec {
        probe,
        port: u16::try_from(h.port).map_err(|_| "health check port out of range")?,
        interval: Duration::from_millis(u64::from(h.interval_ms)),
        timeout: Duration::from_millis(u64::from(h.timeout_ms)),
        thresholds: Thresholds {
            healthy: h.healthy_threshold.max(1),
            unhealthy: h.unhealthy_threshold.max(1),
        },
    })
}

/// The live side of one channel: index-aligned with its prepared members.
#[derive(Debug)]
pub(crate) struct LiveChannel {
    pub health: Vec<Arc<MemberHealth>>,
    /// The active check's thresholds (passive failures count against them).
    pub thresholds: Option<Thresholds>,
    checker: Option<Arc<Checker>>,
}

/// The live side of a snapshot's channels, index-aligned with the runtime's channels.
#[derive(Debug, Default)]
pub(crate) struct ChannelSet {
    channels: Vec<LiveChannel>,
}

/// A running check task; stopped when the last `Serving` using it goes.
#[derive(Debug)]
struct Checker {
    identity: CheckerIdentity,
    task: tokio::task::AbortHandle,
}

/// What a check task checks: it is reused only for the same channel, check and members.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CheckerIdentity {
    channel_id: String,
    spec: CheckSpec,
    members: Vec<String>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Identifies a member's health across snapshots.
fn member_key(channel_id: &str, m: &PreparedMember) -> String {
    format!("{channel_id}\u{0}{}\u{0}{}\u{0}{}", m.id, m.host, m.port)
}

impl ChannelSet {
    /// The live state for `channels`, reusing what `previous` has for unchanged members and
    /// checks, and starting the checks that are new.
    pub(crate) fn build(
        channels: &[PreparedChannel],
        previous: Option<&ChannelSet>,
        tls: &Arc<rustls::ClientConfig>,
        guard: &Arc<AddressGuard>,
        metrics: &GatewayMetrics,
    ) -> Self {
        let mut old_health: HashMap<String, Arc<MemberHealth>> = HashMap::new();
        let mut old_checkers: Vec<Arc<Checker>> = Vec::new();
        if let Some(prev) = previous {
            for live in &prev.channels {
                if let Some(c) = &live.checker {
                    old_checkers.push(Arc::clone(c));
                }
                for h in &live.health {
                    old_health.insert(h.key().to_owned(), Arc::clone(h));
                }
            }
        }

        let channels = channels
            .iter()
            .map(|c| {
                let health: Vec<Arc<MemberHealth>> = c
                    .members
                    .iter()
                    .map(|m| {
                        let key = member_key(&c.id, m);
                        old_health.get(&key).cloned().unwrap_or_else(|| {
                            Arc::new(MemberHealth::with_transitions(
                                key,
                                m.authority.to_string(),
                                Some(metrics.transitions(&c.name, m.authority.as_str())),
                            ))
                        })
                    })
                    .collect();
                let checker = c.check.as_ref().and_then(|spec| {
                    let identity = CheckerIdentity {
                        channel_id: c.id.clone(),
                        spec: spec.clone(),
                        members: c.members.iter().map(|m| member_key(&c.id, m)).collect(),
                    };
                    if let Some(running) = old_checkers.iter().find(|k| k.identity == identity) {
                        return Some(Arc::clone(running));
                    }
                    start_checker(identity, spec, c, &health, tls, guard)
                });
                LiveChannel {
                    thresholds: c.check.as_ref().map(|s| s.thresholds),
                    health,
                    checker,
                }
            })
            .collect();
        Self { channels }
    }

    pub(crate) fn get(&self, index: usize) -> Option<&LiveChannel> {
        self.channels.get(index)
    }

    /// Active check tasks of this set.
    #[cfg(test)]
    pub(crate) fn checkers(&self) -> usize {
        self.channels.iter().filter(|c| c.checker.is_some()).count()
    }
}

fn start_checker(
    identity: CheckerIdentity,
    spec: &CheckSpec,
    c: &PreparedChannel,
    health: &[Arc<MemberHealth>],
    tls: &Arc<rustls::ClientConfig>,
    guard: &Arc<AddressGuard>,
) -> Option<Arc<Checker>> {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::error!(channel = %c.id, "no async runtime to run health checks on");
        return None;
    };
    let targets = c
        .members
        .iter()
        .zip(health)
        .map(|(m, h)| Target {
            host: m.host.clone(),
            port: m.port,
            health: Arc::clone(h),
        })
        .collect();
    let task = runtime.spawn(health::run(
        spec.clone(),
        targets,
        Arc::clone(tls),
        Arc::clone(guard),
    ));
    tracing::debug!(channel = %c.name, members = c.members.len(), "health checks started");
    Some(Arc::new(Checker {
        identity,
        task: task.abort_handle(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use apig_proto::{Channel, HealthCheck, Member};

    fn channel(members: &[(&str, u32)], health: bool, interval_ms: u32) -> PreparedChannel {
        PreparedChannel::prepare(&Channel {
            id: "c1".into(),
            name: "lb".into(),
            strategy: BalanceStrategy::Wrr as i32,
            members: members
                .iter()
                .map(|(id, port)| Member {
                    id: (*id).into(),
                    host: "127.0.0.1".into(),
                    port: *port,
                    weight: 1,
                    ..Default::default()
                })
                .collect(),
            health: health.then(|| HealthCheck {
                protocol: HealthProtocol::Tcp as i32,
                healthy_threshold: 1,
                unhealthy_threshold: 1,
                interval_ms,
                timeout_ms: 100,
                ..Default::default()
            }),
        })
        .unwrap()
    }

    fn tls() -> Arc<rustls::ClientConfig> {
        crate::backend_tls::client_config(None).unwrap()
    }

    fn guard() -> Arc<AddressGuard> {
        let counter = prometheus::IntCounter::new("refused", "refused").unwrap();
        Arc::new(AddressGuard::new(Default::default(), counter))
    }

    #[tokio::test]
    async fn health_and_checks_carry_over_while_unchanged() {
        let c = [channel(&[("m1", 1), ("m2", 2)], true, 60_000)];
        let first = ChannelSet::build(&c, None, &tls(), &guard(), &GatewayMetrics::new().unwrap());
        assert_eq!(first.checkers(), 1);
        let m1 = Arc::clone(&first.get(0).unwrap().health[0]);
        m1.record_check(
            false,
            Thresholds {
                healthy: 1,
                unhealthy: 1,
            },
        );

        // Same members and check: the same health and the same task.
        let c2 = [channel(&[("m1", 1), ("m2", 2)], true, 60_000)];
        let second = ChannelSet::build(
            &c2,
            Some(&first),
            &tls(),
            &guard(),
            &GatewayMetrics::new().unwrap(),
        );
        assert!(Arc::ptr_eq(&second.get(0).unwrap().health[0], &m1));
        assert!(Arc::ptr_eq(
            second.get(0).unwrap().checker.as_ref().unwrap(),
            first.get(0).unwrap().checker.as_ref().unwrap()
        ));
        assert!(!second.get(0).unwrap().health[0].is_usable(0));

        // A member's address changes: fresh health for it, a new task; the other keeps its.
        let c3 = [channel(&[("m1", 9), ("m2", 2)], true, 60_000)];
        let third = ChannelSet::build(
            &c3,
            Some(&second),
            &tls(),
            &guard(),
            &GatewayMetrics::new().unwrap(),
        );
        assert!(third.get(0).unwrap().health[0].is_usable(0));
        assert!(Arc::ptr_eq(
            &third.get(0).unwrap().health[1],
            &second.get(0).unwrap().health[1]
        ));
        let old_task = second
            .get(0)
            .unwrap()
            .checker
            .as_ref()
            .unwrap()
            .task
            .clone();
        drop(first);
        drop(second);
        tokio::task::yield_now().await;
        assert!(
            old_task.is_finished(),
            "the replaced check stops with its last user"
        );

        // No health check: no task.
        let plain = ChannelSet::build(
            &[channel(&[("m1", 1)], false, 0)],
            Some(&third),
            &tls(),
            &guard(),
            &GatewayMetrics::new().unwrap(),
        );
        assert_eq!(plain.checkers(), 0);
    }

    #[test]
    fn bad_channels_are_refused() {
        let mut c = Channel {
            id: "c".into(),
            members: vec![Member {
                id: "m".into(),
                host: "a/b".into(),
                port: 80,
                weight: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(PreparedChannel::prepare(&c).is_err());
        c.members[0].host = "10.0.0.1".into();
        c.members[0].port = 0;
        assert!(PreparedChannel::prepare(&c).is_err());
        c.members[0].port = 80;
        assert!(PreparedChannel::prepare(&c).is_ok());
        c.strategy = 99;
        assert!(PreparedChannel::prepare(&c).is_err());
    }
}
