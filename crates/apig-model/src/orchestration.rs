//! Parameter orchestration rules (`/orchestrations`, semantics digest §10.3): a request
//! parameter's value is mapped to a new parameter (header or query) passed to the backend.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::validate::{self, Problems};
use crate::ApiError;

pub const STRATEGIES: &[&str] = &[
    "list",
    "hash",
    "range",
    "hash_range",
    "none_value",
    "default",
    "head_n",
    "tail_n",
];
/// Map entries per rule.
pub const MAX_ENTRIES: usize = 300;
/// `list` values over all entries.
pub const MAX_LIST_VALUES: usize = 3000;
/// Rules per instance.
pub const MAX_RULES: usize = 1000;

static RULE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9_]{2,63}$").expect("static regex"));
static MAPPED_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9-]{0,127}$").expect("static regex"));
static MAPPED_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_-]{1,128}$").expect("static regex"));

opt_struct! {
    /// OrchestrationMappedParam.
    pub struct MappedParam {
        pub mapped_param_name: String,
        pub mapped_param_type: String,
        pub mapped_param_location: String,
    }
}

opt_struct! {
    /// OrchestrationMapParamRange (numbers as strings, as APIG sends them).
    pub struct MapRange {
        pub range_start: String,
        pub range_end: String,
    }
}

opt_struct! {
    /// OrchestrationMap.
    pub struct MapEntry {
        pub map_param_list: Vec<String>,
        pub map_param_range: MapRange,
        pub mapped_param_value: String,
        pub intercept_length: i64,
    }
}

/// OrchestrationCreate.
#[derive(Deserialize, Default, Debug, Clone)]
pub struct RuleSpec {
    pub orchestration_name: Option<String>,
    pub orchestration_strategy: Option<String>,
    pub orchestration_mapped_param: Option<MappedParam>,
    pub is_preprocessing: Option<bool>,
    pub orchestration_map: Option<Vec<MapEntry>>,
}

/// A stored rule.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub strategy: String,
    pub mapped_param: Option<MappedParam>,
    pub is_preprocessing: bool,
    pub map: Vec<MapEntry>,
    pub create_time: String,
    pub update_time: String,
}

/// A range bound: 0 to 2^63−1.
pub fn range_bound(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok().filter(|v| *v >= 0)
}

impl RuleSpec {
    pub fn validate(&self) -> Result<(), ApiError> {
        let mut p = Problems::new();
        match validate::required("orchestration_name", &self.orchestration_name) {
            Ok(n) if RULE_NAME.is_match(n) => {}
            Ok(_) => p.push(ApiError::invalid(
                "orchestration_name",
                "3 to 64 letters, digits and underscores, starting with a letter",
            )),
            Err(e) => p.push(e),
        }
        let strategy =
            match validate::required("orchestration_strategy", &self.orchestration_strategy) {
                Ok(s) if STRATEGIES.contains(&s) => s,
                Ok(_) => {
                    p.push(ApiError::invalid(
                        "orchestration_strategy",
                        format!("one of {}", STRATEGIES.join(", ")),
                    ));
                    return p.into_result();
                }
                Err(e) => {
                    p.push(e);
                    return p.into_result();
                }
            };
        let preprocessing = self.is_preprocessing.unwrap_or(false);
        if preprocessing && matches!(strategy, "none_value" | "default") {
            p.push(ApiError::invalid(
                "is_preprocessing",
                "none_value and default rules cannot be preprocessing",
            ));
        }
        let needs_param = !preprocessing || matches!(strategy, "none_value" | "default");
        match (&self.orchestration_mapped_param, needs_param) {
            (Some(m), _) => {
                match validate::required(
                    "orchestration_mapped_param.mapped_param_name",
                    &m.mapped_param_name,
                ) {
                    Ok(n) if MAPPED_NAME.is_match(n) => {}
                    Ok(_) => p.push(ApiError::invalid(
                        "orchestration_mapped_param.mapped_param_name",
                        "1 to 128 letters, digits and hyphens, starting with a letter",
                    )),
                    Err(e) => p.push(e),
                }
                for (field, v, allowed) in [
                    (
                        "orchestration_mapped_param.mapped_param_type",
                        &m.mapped_param_type,
                        &["string", "number"][..],
                    ),
                    (
                        "orchestration_mapped_param.mapped_param_location",
                        &m.mapped_param_location,
                        &["header", "query"][..],
                    ),
                ] {
                    match validate::required(field, v) {
                        Ok(v) => p.check(validate::one_of(field, v, allowed)),
                        Err(e) => p.push(e),
                    }
                }
            }
            (None, true) => p.push(ApiError::required("orchestration_mapped_param")),
            (None, false) => {}
        }
        let map = self.orchestration_map.as_deref().unwrap_or_default();
        let needs_map = !matches!(strategy, "hash");
        if needs_map && (map.is_empty() || map.len() > MAX_ENTRIES) {
            p.push(ApiError::invalid(
                "orchestration_map",
                format!("1 to {MAX_ENTRIES} entries"),
            ));
        }
        if matches!(strategy, "none_value" | "default") && map.len() > 1 {
            p.push(ApiError::invalid(
                "orchestration_map",
                "exactly 1 entry for none_value and default",
            ));
        }
        let mut list_values = 0;
        let mut seen = HashSet::new();
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        for e in map {
            if !matches!(strategy, "head_n" | "tail_n" | "hash") {
                match validate::required(
                    "orchestration_map.mapped_param_value",
                    &e.mapped_param_value,
                ) {
                    Ok(v) if MAPPED_VALUE.is_match(v) => {}
                    Ok(_) => p.push(ApiError::invalid(
                        "orchestration_map.mapped_param_value",
                        "1 to 128 letters, digits, _ and -",
                    )),
                    Err(err) => p.push(err),
                }
            }
            match strategy {
                "list" => {
                    let values = e.map_param_list.as_deref().unwrap_or_default();
                    if values.is_empty() {
                        p.push(ApiError::required("orchestration_map.map_param_list"));
                    }
                    list_values += values.len();
                    for v in values {
                        if v.is_empty() || v.chars().count() > 128 {
                            p.push(ApiError::invalid(
                                "orchestration_map.map_param_list",
                                "values of 1 to 128 characters",
                            ));
                        } else if !seen.insert(v.clone()) {
                            p.push(ApiError::invalid(
                                "orchestration_map.map_param_list",
                                format!("{v} is listed twice"),
                            ));
                        }
                    }
                }
                "range" | "hash_range" => {
                    let r = e.map_param_range.clone().unwrap_or_default();
                    let start = r.range_start.as_deref().and_then(range_bound);
                    let end = r.range_end.as_deref().and_then(range_bound);
                    match (start, end) {
                        (Some(a), Some(b)) if a <= b => {
                            if ranges.iter().any(|(x, y)| a <= *y && *x <= b) {
                                p.push(ApiError::invalid(
                                    "orchestration_map.map_param_range",
                                    "ranges overlap",
                                ));
                            }
                            ranges.push((a, b));
                        }
                        _ => p.push(ApiError::invalid(
                            "orchestration_map.map_param_range",
                            "range_start <= range_end, both from 0 to 9223372036854775807",
                        )),
                    }
                }
                "head_n" | "tail_n" => match e.intercept_length {
                    Some(1..=100) => {}
                    _ => p.push(ApiError::invalid(
                        "orchestration_map.intercept_length",
                        "1 to 100",
                    )),
                },
                _ => {}
            }
        }
        if list_values > MAX_LIST_VALUES {
            p.push(ApiError::invalid(
                "orchestration_map.map_param_list",
                format!("at most {MAX_LIST_VALUES} values in all"),
            ));
        }
        p.into_result()
    }

    pub fn into_rule(self, id: String, create_time: String, now: String) -> Rule {
        let strategy = self.orchestration_strategy.unwrap_or_default();
        let mut map = self.orchestration_map.unwrap_or_default();
        if strategy == "hash" {
            map.clear();
        }
        Rule {
            id,
            name: self.orchestration_name.unwrap_or_default(),
            is_preprocessing: self.is_preprocessing.unwrap_or(false),
            mapped_param: self.orchestration_mapped_param,
            map,
            strategy,
            create_time,
            update_time: now,
        }
    }
}

impl Rule {
    /// OrchestrationBaseResp / CreateOrchestrationResponse.
    pub fn to_json(&self) -> Value {
        json!({
            "orchestration_id": self.id, "orchestration_name": self.name,
            "orchestration_strategy": self.strategy, "is_preprocessing": self.is_preprocessing,
            "orchestration_mapped_param": self.mapped_param, "orchestration_map": self.map,
            "orchestration_create_time": self.create_time, "orchestration_update_time": self.update_time,
        })
    }
}

/// Checks the order of the rules one request parameter lists: at most one `none_value` and one
/// `default`; a preprocessing rule cannot be the last one (the default aside).
pub fn check_sequence(rules: &[&Rule]) -> Result<(), ApiError> {
    let count = |s: &str| rules.iter().filter(|r| r.strategy == s).count();
    if count("none_value") > 1 || count("default") > 1 {
        return Err(ApiError::invalid(
            "req_params.orchestrations",
            "at most one none_value and one default rule",
        ));
    }
    let last = rules
        .iter()
        .rev()
        .find(|r| r.strategy != "default" && r.strategy != "none_value");
    if last.is_some_and(|r| r.is_preprocessing) {
        return Err(ApiError::invalid(
            "req_params.orchestrations",
            "a preprocessing rule cannot be the last rule",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: Value) -> RuleSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn strategies() {
        let mp = json!({"mapped_param_name": "x-tier", "mapped_param_type": "string", "mapped_param_location": "header"});
        for ok in [
            json!({"orchestration_name": "tiers", "orchestration_strategy": "list", "orchestration_mapped_param": mp,
                "orchestration_map": [{"map_param_list": ["a", "b"], "mapped_param_value": "gold"}]}),
            json!({"orchestration_name": "shards", "orchestration_strategy": "range", "orchestration_mapped_param": mp,
                "orchestration_map": [{"map_param_range": {"range_start": "0", "range_end": "99"}, "mapped_param_value": "s1"},
                                      {"map_param_range": {"range_start": "100", "range_end": "199"}, "mapped_param_value": "s2"}]}),
            json!({"orchestration_name": "hashed", "orchestration_strategy": "hash", "orchestration_mapped_param": mp}),
            json!({"orchestration_name": "prefix", "orchestration_strategy": "head_n", "is_preprocessing": true,
                "orchestration_map": [{"intercept_length": 3}]}),
            json!({"orchestration_name": "fallback", "orchestration_strategy": "default", "orchestration_mapped_param": mp,
                "orchestration_map": [{"mapped_param_value": "basic"}]}),
        ] {
            spec(ok.clone())
                .validate()
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            json!({"orchestration_name": "x", "orchestration_strategy": "list"}),
            json!({"orchestration_name": "tiers", "orchestration_strategy": "random", "orchestration_mapped_param": mp}),
            json!({"orchestration_name": "tiers", "orchestration_strategy": "list", "orchestration_mapped_param": mp,
                "orchestration_map": [{"map_param_list": ["a", "a"], "mapped_param_value": "gold"}]}),
            json!({"orchestration_name": "shards", "orchestration_strategy": "range", "orchestration_mapped_param": mp,
                "orchestration_map": [{"map_param_range": {"range_start": "0", "range_end": "99"}, "mapped_param_value": "s1"},
                                      {"map_param_range": {"range_start": "50", "range_end": "199"}, "mapped_param_value": "s2"}]}),
            json!({"orchestration_name": "shards", "orchestration_strategy": "range", "orchestration_mapped_param": mp,
                "orchestration_map": [{"map_param_range": {"range_start": "-1", "range_end": "9"}, "mapped_param_value": "s1"}]}),
            json!({"orchestration_name": "prefix", "orchestration_strategy": "head_n", "is_preprocessing": true,
                "orchestration_map": [{"intercept_length": 101}]}),
            json!({"orchestration_name": "tiers", "orchestration_strategy": "list",
                "orchestration_map": [{"map_param_list": ["a"], "mapped_param_value": "gold"}]}),
        ] {
            assert!(spec(bad.clone()).validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn sequences() {
        let rule = |s: &str, pre: bool| {
            spec(json!({"orchestration_name": "r_1", "orchestration_strategy": s, "is_preprocessing": pre}))
                .into_rule("i".into(), "t".into(), "t".into())
        };
        let (head, list, default) = (
            rule("head_n", true),
            rule("list", false),
            rule("default", false),
        );
        assert!(check_sequence(&[&head, &list, &default]).is_ok());
        assert!(check_sequence(&[&list, &head, &default]).is_err());
        assert!(check_sequence(&[&list, &default, &default]).is_err());
    }
}
