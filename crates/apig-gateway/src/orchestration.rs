//! Parameter orchestration: a request parameter's value mapped, rule after rule, to a new
//! parameter sent to the backend (semantics digest §10.3).
//!
//! An absent (or empty) value takes the `none_value` rule's value, if there is one. Otherwise the
//! rules run in order: `list` maps listed values, `range` maps an integer in a range, `hash` maps
//! any value to its hash, `hash_range` maps the hash's range, `head_n` and `tail_n` keep the first
//! or last n characters. A preprocessing rule's result becomes the value the next rules see; the
//! first other rule that gives a result ends the sequence, and its mapped parameter carries the
//! result. When no rule gives one, the `default` rule's value is used, else the request fails
//! with `400 APIG.0106`.
//!
//! The hash is APIG's unstated "hash": here the first 8 bytes of the value's SHA-256, big-endian,
//! with the top bit cleared: an integer from 0 to 2^63−1, so `hash_range` ranges partition it.

use std::collections::HashMap;

use apig_proto::{OrchestrationRule, OrchestrationStrategy, ParamLocation};
use http::HeaderName;
use sha2::{Digest, Sha256};

use crate::params::{parse_header_name, Location};
use crate::respond::GatewayErrorKind;

/// The orchestration of one request parameter.
#[derive(Debug, Clone)]
pub(crate) struct Orchestration {
    /// The parameter's name, for errors.
    param: String,
    rules: Vec<Rule>,
    none_value: Option<Output>,
    default: Option<Output>,
}

#[derive(Debug, Clone)]
struct Rule {
    kind: Kind,
    preprocessing: bool,
    target: Option<Target>,
}

#[derive(Debug, Clone)]
enum Kind {
    List(HashMap<String, String>),
    Hash,
    Range(Vec<(i64, i64, String)>),
    HashRange(Vec<(i64, i64, String)>),
    HeadN(usize),
    TailN(usize),
}

/// Where a result goes.
#[derive(Debug, Clone)]
struct Target {
    location: Location,
    name: String,
    header: Option<HeaderName>,
}

/// A fixed result (`none_value`, `default`).
#[derive(Debug, Clone)]
struct Output {
    target: Target,
    value: String,
}

/// The parameter orchestration produced for the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Orchestrated {
    pub location: Location,
    pub name: String,
    pub header: Option<HeaderName>,
    pub value: String,
}

impl Orchestration {
    pub(crate) fn prepare(param: &str, rules: &[OrchestrationRule]) -> Result<Self, String> {
        let mut out = Self {
            param: param.to_owned(),
            rules: Vec::new(),
            none_value: None,
            default: None,
        };
        for r in rules {
            let fail = |why: &str| format!("orchestration rule {:?}: {why}", r.name);
            let target = if r.mapped_name.is_empty() {
                None
            } else {
                let location = match ParamLocation::try_from(r.mapped_location) {
                    Ok(ParamLocation::Query) => Location::Query,
                    Ok(ParamLocation::Header) => Location::Header,
                    _ => {
                        return Err(fail(
                            "the mapped parameter is a header or a query parameter",
                        ))
                    }
                };
                let header = match location {
                    Location::Header => Some(
                        parse_header_name(&r.mapped_name)
                            .map_err(|_| fail("mapped header name"))?,
                    ),
                    _ => None,
                };
                Some(Target {
                    location,
                    name: r.mapped_name.clone(),
                    header,
                })
            };
            let first_value = || {
                r.entries
                    .first()
                    .map(|e| e.mapped_value.clone())
                    .ok_or_else(|| fail("no value"))
            };
            let ranges = || -> Vec<(i64, i64, String)> {
                r.entries
                    .iter()
                    .map(|e| (e.range_start, e.range_end, e.mapped_value.clone()))
                    .collect()
            };
            let length = || {
                r.entries
                    .first()
                    .map(|e| e.intercept_length as usize)
                    .filter(|n| *n > 0)
                    .ok_or_else(|| fail("no intercept length"))
            };
            let kind = match OrchestrationStrategy::try_from(r.strategy) {
                Ok(OrchestrationStrategy::NoneValue) => {
                    out.none_value = Some(Output {
                        target: target.ok_or_else(|| fail("no mapped parameter"))?,
                        value: first_value()?,
                    });
                    continue;
                }
                Ok(OrchestrationStrategy::Default) => {
                    out.default = Some(Output {
                        target: target.ok_or_else(|| fail("no mapped parameter"))?,
                        value: first_value()?,
                    });
                    continue;
                }
                Ok(OrchestrationStrategy::List) => Kind::List(
                    r.entries
                        .iter()
                        .flat_map(|e| {
                            e.values
                                .iter()
                                .map(move |v| (v.clone(), e.mapped_value.clone()))
                        })
                        .collect(),
                ),
                Ok(OrchestrationStrategy::Hash) => Kind::Hash,
                Ok(OrchestrationStrategy::Range) => Kind::Range(ranges()),
                Ok(OrchestrationStrategy::HashRange) => Kind::HashRange(ranges()),
                Ok(OrchestrationStrategy::HeadN) => Kind::HeadN(length()?),
                Ok(OrchestrationStrategy::TailN) => Kind::TailN(length()?),
                Err(_) => return Err(fail("unknown strategy")),
            };
            if !r.preprocessing && target.is_none() {
                return Err(fail("no mapped parameter"));
            }
            out.rules.push(Rule {
                kind,
                preprocessing: r.preprocessing,
                target,
            });
        }
        Ok(out)
    }

    /// Runs the rules on the parameter's value.
    pub(crate) fn apply(
        &self,
        value: Option<&str>,
    ) -> Result<Option<Orchestrated>, GatewayErrorKind> {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(self.none_value.as_ref().map(Output::orchestrated));
        };
        let mut current = value.to_owned();
        for rule in &self.rules {
            let Some(result) = rule.kind.map(&current) else {
                continue;
            };
            match (&rule.target, rule.preprocessing) {
                (Some(target), false) => return Ok(Some(target.with(result))),
                _ => current = result,
            }
        }
        match &self.default {
            Some(d) => Ok(Some(d.orchestrated())),
            None => Err(GatewayErrorKind::OrchestrationFailed(format!(
                "no orchestration rule matches the value of {}",
                self.param
            ))),
        }
    }
}

impl Kind {
    fn map(&self, value: &str) -> Option<String> {
        let in_range = |ranges: &[(i64, i64, String)], v: i64| {
            ranges
                .iter()
                .find(|(a, b, _)| (*a..=*b).contains(&v))
                .map(|(_, _, m)| m.clone())
        };
        match self {
            Self::List(map) => map.get(value).cloned(),
            Self::Hash => Some(hash(value).to_string()),
            Self::Range(r) => value
                .trim()
                .parse::<i64>()
                .ok()
                .and_then(|v| in_range(r, v)),
            Self::HashRange(r) => in_range(r, hash(value)),
            Self::HeadN(n) => Some(value.chars().take(*n).collect()),
            Self::TailN(n) => {
                let len = value.chars().count();
                Some(value.chars().skip(len.saturating_sub(*n)).collect())
            }
        }
    }
}

impl Target {
    fn with(&self, value: String) -> Orchestrated {
        Orchestrated {
            location: self.location,
            name: self.name.clone(),
            header: self.header.clone(),
            value,
        }
    }
}

impl Output {
    fn orchestrated(&self) -> Orchestrated {
        self.target.with(self.value.clone())
    }
}

/// The orchestration hash: SHA-256, first 8 bytes big-endian, top bit cleared.
pub(crate) fn hash(value: &str) -> i64 {
    let digest = Sha256::digest(value.as_bytes());
    let mut first = [0u8; 8];
    if let Some(head) = digest.get(..8) {
        first.copy_from_slice(head);
    }
    (u64::from_be_bytes(first) & (i64::MAX as u64)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use apig_proto::OrchestrationEntry;

    fn rule(
        strategy: OrchestrationStrategy,
        pre: bool,
        mapped: &str,
        entries: Vec<OrchestrationEntry>,
    ) -> OrchestrationRule {
        OrchestrationRule {
            id: "r".into(),
            name: format!("{strategy:?}"),
            strategy: strategy as i32,
            preprocessing: pre,
            mapped_name: mapped.into(),
            mapped_location: ParamLocation::Header as i32,
            entries,
        }
    }

    fn list(values: &[&str], mapped: &str) -> OrchestrationEntry {
        OrchestrationEntry {
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            mapped_value: mapped.into(),
            ..OrchestrationEntry::default()
        }
    }

    fn range(a: i64, b: i64, mapped: &str) -> OrchestrationEntry {
        OrchestrationEntry {
            range_start: a,
            range_end: b,
            mapped_value: mapped.into(),
            ..OrchestrationEntry::default()
        }
    }

    fn value(o: &Orchestration, v: Option<&str>) -> Option<String> {
        o.apply(v).unwrap().map(|x| x.value)
    }

    #[test]
    fn strategies_in_order() {
        use OrchestrationStrategy::*;
        let o = Orchestration::prepare(
            "user",
            &[
                rule(NoneValue, false, "x-tier", vec![list(&[], "anonymous")]),
                rule(
                    HeadN,
                    true,
                    "",
                    vec![OrchestrationEntry {
                        intercept_length: 3,
                        ..OrchestrationEntry::default()
                    }],
                ),
                rule(List, false, "x-tier", vec![list(&["vip", "gol"], "gold")]),
                rule(
                    Range,
                    false,
                    "x-tier",
                    vec![range(100, 199, "shard-1"), range(200, 299, "shard-2")],
                ),
                rule(Default, false, "x-tier", vec![list(&[], "basic")]),
            ],
        )
        .unwrap();
        assert_eq!(value(&o, None).as_deref(), Some("anonymous"));
        assert_eq!(value(&o, Some("")).as_deref(), Some("anonymous"));
        assert_eq!(value(&o, Some("vip-customer")).as_deref(), Some("gold"));
        assert_eq!(value(&o, Some("golden")).as_deref(), Some("gold"));
        assert_eq!(
            value(&o, Some("2501")).as_deref(),
            Some("shard-2"),
            "head_n keeps 250"
        );
        assert_eq!(value(&o, Some("zzz")).as_deref(), Some("basic"));
        let out = o.apply(Some("vip")).unwrap().unwrap();
        assert_eq!(
            (out.location, out.name.as_str()),
            (Location::Header, "x-tier")
        );
    }

    #[test]
    fn hashes_and_failures() {
        use OrchestrationStrategy::*;
        let h = hash("user-42");
        assert!(h >= 0);
        assert_eq!(h, hash("user-42"), "stable");
        let o = Orchestration::prepare("user", &[rule(Hash, false, "x-h", vec![])]).unwrap();
        assert_eq!(value(&o, Some("user-42")), Some(h.to_string()));
        let o = Orchestration::prepare(
            "user",
            &[rule(
                HashRange,
                false,
                "x-shard",
                vec![
                    range(0, i64::MAX / 2, "a"),
                    range(i64::MAX / 2 + 1, i64::MAX, "b"),
                ],
            )],
        )
        .unwrap();
        let shards: Vec<_> = (0..200)
            .map(|i| value(&o, Some(&format!("u{i}"))).unwrap())
            .collect();
        let a = shards.iter().filter(|s| *s == "a").count();
        assert!((60..140).contains(&a), "{a}");
        // Without a match or a default: APIG.0106.
        let o =
            Orchestration::prepare("user", &[rule(List, false, "x-t", vec![list(&["a"], "A")])])
                .unwrap();
        assert!(matches!(
            o.apply(Some("b")),
            Err(GatewayErrorKind::OrchestrationFailed(_))
        ));
        // Absent value without none_value: nothing to send.
        assert_eq!(o.apply(None).unwrap(), None);
        let o = Orchestration::prepare(
            "user",
            &[rule(
                TailN,
                false,
                "x-t",
                vec![OrchestrationEntry {
                    intercept_length: 2,
                    ..OrchestrationEntry::default()
                }],
            )],
        )
        .unwrap();
        assert_eq!(value(&o, Some("héllo")).as_deref(), Some("lo"));
    }
}
