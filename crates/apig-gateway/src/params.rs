//! Request parameters: where a value is read from (path, query, header), the required check,
//! default values and the validation rules of APIG's `ReqParamBase` (semantics digest §3.4).
//!
//! Rules where APIG is silent or ambiguous, decided here:
//! - An empty value counts as absent (APIG runs on nginx, where `?id=` and no `id` read the same).
//! - Query keys compare case-sensitively, header names case-insensitively.
//! - Any type other than `NUMBER` is validated as `STRING` (APIG sends booleans as `STRING`).
//! - Validation (`validate`) applies to values the client sent, not to configured defaults.
//! - `pass_through` is not consulted: request parameters always pass through (see `mapping`).

use std::borrow::Cow;

use apig_proto::{ParamLocation, RequestParam};
use http::{HeaderMap, HeaderName};

use crate::orchestration::{Orchestrated, Orchestration};
use crate::query::Query;
use crate::respond::GatewayErrorKind;

/// Where a parameter lives in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Location {
    Path,
    Query,
    Header,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamType {
    String,
    Number,
}

/// One declared request parameter, checked and pre-parsed when the snapshot is prepared.
#[derive(Debug, Clone)]
pub(crate) struct ReqParamSpec {
    pub name: String,
    pub location: Location,
    /// The header name for `HEADER` parameters, parsed once.
    pub header: Option<HeaderName>,
    ty: ParamType,
    required: bool,
    default: Option<String>,
    validate: bool,
    enumerations: Vec<String>,
    min_num: Option<i64>,
    max_num: Option<i64>,
    min_size: Option<i64>,
    max_size: Option<i64>,
    /// The parameter's orchestration rules (at most one parameter of an API has them).
    orchestration: Option<Box<Orchestration>>,
}

/// Read access to the values of one request.
pub(crate) struct RequestView<'a, 'q> {
    /// Path parameters from the route match, already canonical (decoded) text.
    pub path_params: &'a [(&'a str, &'a str)],
    pub query: &'q Query<'a>,
    pub headers: &'a HeaderMap,
}

/// The value of every declared parameter after defaults, index-aligned with the specs.
#[derive(Debug)]
pub(crate) struct Resolved<'a> {
    pub values: Vec<Option<Cow<'a, str>>>,
    /// Whether the value is the configured default (so `mapping` adds it to what is forwarded).
    pub defaulted: Vec<bool>,
    /// The parameter an orchestrated request parameter was mapped to, if any.
    pub orchestrated: Option<Orchestrated>,
}

// === impl Location ===

impl Location {
    pub(crate) fn from_proto(value: i32) -> Result<Self, String> {
        match ParamLocation::try_from(value) {
            Ok(ParamLocation::Path) => Ok(Self::Path),
            Ok(ParamLocation::Query) => Ok(Self::Query),
            Ok(ParamLocation::Header) => Ok(Self::Header),
            Err(_) => Err(format!("unknown parameter location {value}")),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Path => "PATH",
            Self::Query => "QUERY",
            Self::Header => "HEADER",
        }
    }
}

// === impl ReqParamSpec ===

impl ReqParamSpec {
    pub(crate) fn prepare(param: &RequestParam) -> Result<Self, String> {
        if param.name.is_empty() {
            return Err("request parameter with an empty name".into());
        }
        let location = Location::from_proto(param.location)
            .map_err(|e| format!("request parameter {}: {e}", param.name))?;
        let header = match location {
            Location::Header => Some(parse_header_name(&param.name).map_err(|e| {
                format!("request parameter {}: invalid header name: {e}", param.name)
            })?),
            _ => None,
        };
        let ty = if param.r#type.eq_ignore_ascii_case("NUMBER") {
            ParamType::Number
        } else {
            ParamType::String
        };
        let enumerations = param
            .enumerations
            .iter()
            .flat_map(|e| e.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Self {
            name: param.name.clone(),
            location,
            header,
            ty,
            required: param.required,
            default: (!param.default_value.is_empty()).then(|| param.default_value.clone()),
            validate: param.validate,
            enumerations,
            min_num: param.min_num,
            max_num: param.max_num,
            min_size: param.min_size,
            max_size: param.max_size,
            orchestration: if param.orchestrations.is_empty() {
                None
            } else {
                Some(Box::new(Orchestration::prepare(
                    &param.name,
                    &param.orchestrations,
                )?))
            },
        })
    }

    /// Checks a value the client sent against the validation rules.
    fn check(&self, value: &str) -> Result<(), GatewayErrorKind> {
        if !self.validate {
            return Ok(());
        }
        let invalid = |reason: String| GatewayErrorKind::InvalidParameter {
            name: self.name.clone(),
            reason,
        };
        match self.ty {
            ParamType::Number => {
                let number = parse_number(value).ok_or_else(|| invalid("not a number".into()))?;
                if let Some(min) = self.min_num {
                    if number < min as f64 {
                        return Err(invalid(format!("less than the minimum {min}")));
                    }
                }
                if let Some(max) = self.max_num {
                    if number > max as f64 {
                        return Err(invalid(format!("greater than the maximum {max}")));
                    }
                }
            }
            ParamType::String => {
                let len = i64::try_from(value.chars().count()).unwrap_or(i64::MAX);
                if let Some(min) = self.min_size {
                    if len < min {
                        return Err(invalid(format!("shorter than {min} characters")));
                    }
                }
                if let Some(max) = self.max_size {
                    if len > max {
                        return Err(invalid(format!("longer than {max} characters")));
                    }
                }
            }
        }
        if !self.enumerations.is_empty() && !self.enumerations.iter().any(|e| e == value) {
            return Err(invalid(format!(
                "not one of the allowed values ({})",
                self.enumerations.join(", ")
            )));
        }
        Ok(())
    }
}

/// Parses a header name as configured (any case) into hyper's lowercase form.
pub(crate) fn parse_header_name(name: &str) -> Result<HeaderName, http::header::InvalidHeaderName> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
}

/// A NUMBER value: an integer, or a finite decimal.
fn parse_number(value: &str) -> Option<f64> {
    if let Ok(n) = value.parse::<i64>() {
        return Some(n as f64);
    }
    // Rust's float parser also takes "inf", "NaN" and "1e5"; only plain decimals are numbers here.
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+');
    if !plain {
        return None;
    }
    value.parse::<f64>().ok().filter(|n| n.is_finite())
}

// === impl RequestView ===

impl<'a> RequestView<'a, '_> {
    /// The value of a parameter in the request, if present and non-empty.
    pub(crate) fn get(
        &self,
        location: Location,
        name: &str,
        header: Option<&HeaderName>,
    ) -> Option<Cow<'a, str>> {
        let value: Cow<'a, str> = match location {
            Location::Path => self
                .path_params
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| Cow::Borrowed(*v))?,
            Location::Query => self.query.get(name)?,
            Location::Header => {
                let raw = match header {
                    Some(h) => self.headers.get(h),
                    None => self.headers.get(name),
                }?;
                match raw.to_str() {
                    Ok(s) => Cow::Borrowed(s),
                    Err(_) => Cow::Owned(String::from_utf8_lossy(raw.as_bytes()).into_owned()),
                }
            }
        };
        (!value.is_empty()).then_some(value)
    }
}

/// Resolves every declared parameter: the client's value (validated), else the default, else a
/// missing-parameter error when required.
pub(crate) fn resolve<'a>(
    specs: &'a [ReqParamSpec],
    view: &RequestView<'a, '_>,
) -> Result<Resolved<'a>, GatewayErrorKind> {
    let mut values = Vec::with_capacity(specs.len());
    let mut defaulted = Vec::with_capacity(specs.len());
    for spec in specs {
        match view.get(spec.location, &spec.name, spec.header.as_ref()) {
            Some(value) => {
                spec.check(&value)?;
                values.push(Some(value));
                defaulted.push(false);
            }
            None => match &spec.default {
                Some(default) if !spec.required => {
                    values.push(Some(Cow::Borrowed(default.as_str())));
                    defaulted.push(true);
                }
                _ if spec.required => {
                    return Err(GatewayErrorKind::MissingParameter {
                        name: spec.name.clone(),
                        location: spec.location.as_str(),
                    });
                }
                _ => {
                    values.push(None);
                    defaulted.push(false);
                }
            },
        }
    }
    let mut orchestrated = None;
    for (spec, value) in specs.iter().zip(&values) {
        if let Some(o) = &spec.orchestration {
            orchestrated = o.apply(value.as_deref())?;
        }
    }
    Ok(Resolved {
        values,
        defaulted,
        orchestrated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn param(name: &str, location: ParamLocation, ty: &str) -> RequestParam {
        RequestParam {
            name: name.into(),
            location: location as i32,
            r#type: ty.into(),
            ..Default::default()
        }
    }

    fn spec(p: RequestParam) -> ReqParamSpec {
        ReqParamSpec::prepare(&p).unwrap()
    }

    fn run(
        specs: &[ReqParamSpec],
        path: &[(&str, &str)],
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Vec<Option<String>>, GatewayErrorKind> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let q = Query::parse(Some(query));
        let view = RequestView {
            path_params: path,
            query: &q,
            headers: &map,
        };
        resolve(specs, &view).map(|r| {
            r.values
                .into_iter()
                .map(|v| v.map(|v| v.into_owned()))
                .collect()
        })
    }

    #[test]
    fn reads_each_location() {
        let specs = [
            spec(param("id", ParamLocation::Path, "STRING")),
            spec(param("q", ParamLocation::Query, "STRING")),
            spec(param("X-Token", ParamLocation::Header, "STRING")),
        ];
        let got = run(&specs, &[("id", "7")], "q=a%20b&z=1", &[("x-token", "t")]).unwrap();
        assert_eq!(
            got,
            vec![Some("7".into()), Some("a b".into()), Some("t".into())]
        );
    }

    #[test]
    fn required_missing_names_the_parameter() {
        let mut p = param("userId", ParamLocation::Query, "STRING");
        p.required = true;
        let err = run(&[spec(p)], &[], "other=1", &[]).unwrap_err();
        assert_eq!(
            err,
            GatewayErrorKind::MissingParameter {
                name: "userId".into(),
                location: "QUERY"
            }
        );
        assert!(err.message().contains("userId"));
    }

    #[test]
    fn empty_value_counts_as_missing() {
        let mut p = param("h", ParamLocation::Header, "STRING");
        p.required = true;
        assert!(run(&[spec(p)], &[], "", &[("h", "")]).is_err());
    }

    #[test]
    fn default_applies_when_absent_and_not_required() {
        let mut p = param("page", ParamLocation::Query, "NUMBER");
        p.default_value = "1".into();
        let specs = [spec(p)];
        assert_eq!(run(&specs, &[], "", &[]).unwrap(), vec![Some("1".into())]);
        assert_eq!(
            run(&specs, &[], "page=3", &[]).unwrap(),
            vec![Some("3".into())]
        );
    }

    #[test]
    fn required_with_default_still_fails_when_absent() {
        let mut p = param("page", ParamLocation::Query, "STRING");
        p.default_value = "1".into();
        p.required = true;
        assert!(run(&[spec(p)], &[], "", &[]).is_err());
    }

    #[test]
    fn number_validation() {
        let mut p = param("n", ParamLocation::Query, "NUMBER");
        p.validate = true;
        p.min_num = Some(1);
        p.max_num = Some(10);
        let specs = [spec(p)];
        assert!(run(&specs, &[], "n=5", &[]).is_ok());
        assert!(run(&specs, &[], "n=1", &[]).is_ok());
        assert!(run(&specs, &[], "n=10", &[]).is_ok());
        assert!(run(&specs, &[], "n=2.5", &[]).is_ok());
        for bad in ["n=0", "n=11", "n=abc", "n=inf", "n=NaN", "n=1e3", "n=-3"] {
            let err = run(&specs, &[], bad, &[]).unwrap_err();
            assert!(
                matches!(err, GatewayErrorKind::InvalidParameter { ref name, .. } if name == "n"),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn number_without_validate_is_not_checked() {
        let specs = [spec(param("n", ParamLocation::Query, "NUMBER"))];
        assert!(run(&specs, &[], "n=abc", &[]).is_ok());
    }

    #[test]
    fn string_size_validation_counts_characters() {
        let mut p = param("s", ParamLocation::Query, "STRING");
        p.validate = true;
        p.min_size = Some(2);
        p.max_size = Some(3);
        let specs = [spec(p)];
        assert!(run(&specs, &[], "s=ab", &[]).is_ok());
        assert!(run(&specs, &[], "s=%C3%A9%C3%A9%C3%A9", &[]).is_ok());
        assert!(run(&specs, &[], "s=a", &[]).is_err());
        assert!(run(&specs, &[], "s=abcd", &[]).is_err());
    }

    #[test]
    fn enumerations() {
        let mut p = param("color", ParamLocation::Header, "STRING");
        p.validate = true;
        p.enumerations = vec!["red,green".into(), "blue".into()];
        let specs = [spec(p)];
        for ok in ["red", "green", "blue"] {
            assert!(run(&specs, &[], "", &[("color", ok)]).is_ok(), "{ok}");
        }
        let err = run(&specs, &[], "", &[("color", "pink")]).unwrap_err();
        assert!(err.message().contains("color"));
    }

    #[test]
    fn invalid_header_parameter_name_fails_preparation() {
        assert!(
            ReqParamSpec::prepare(&param("bad name", ParamLocation::Header, "STRING")).is_err()
        );
        let mut unknown = param("x", ParamLocation::Query, "STRING");
        unknown.location = 42;
        assert!(ReqParamSpec::prepare(&unknown).is_err());
    }
}
