//! Frontend path templates (`Api.req_uri`): `/users/{id}/files/{path+}`.
//!
//! A template is parsed into segments that compare against a [`CanonicalPath`]'s decoded
//! segments, so literal segments are decoded with the same rules as request paths: a template
//! that could never match a canonical path (dot segments, empty segments, `%2F`) is refused at
//! compile time instead of silently never matching.
//!
//! [`CanonicalPath`]: crate::CanonicalPath

use crate::path::{self, PathError, MAX_PATH_LEN, MAX_SEGMENTS};

/// Why a path template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template is empty or does not start with `/`.
    #[error("the path must start with '/'")]
    NotAbsolute,
    /// `//` inside the template: canonical request paths never have empty segments.
    #[error("the path has an empty segment ('//')")]
    EmptySegment,
    /// A `.` or `..` segment: canonical request paths never have them.
    #[error("the path has a '.' or '..' segment")]
    DotSegment,
    /// `{}` or `{+}`.
    #[error("a path parameter has an empty name")]
    EmptyParamName,
    /// A parameter name with characters other than `A-Za-z0-9-_.`.
    #[error("path parameter name {0:?} may only contain letters, digits, '-', '_' and '.'")]
    InvalidParamName(String),
    /// The same parameter name twice (names compare case-insensitively, as APIG's do).
    #[error("path parameter {0:?} appears more than once")]
    DuplicateParamName(String),
    /// `{a`, `a}`, `{{a}}`.
    #[error("the path has unbalanced braces")]
    UnbalancedBrace,
    /// A parameter sharing its segment with other text (`a{b}`, `{a}{b}`, `{a}.json`): allowed
    /// by APIG only in backend paths.
    #[error("a path parameter must be a whole segment")]
    MixedSegment,
    /// `{name+}` anywhere but as the last segment (a trailing slash after it counts).
    #[error("a greedy parameter {{name+}} must be the last segment")]
    GreedyNotLast,
    /// A literal segment that is not a valid canonical path segment.
    #[error("the path has an invalid segment: {0}")]
    InvalidSegment(PathError),
    /// Over [`MAX_PATH_LEN`] bytes.
    #[error("the path is too long")]
    TooLong,
    /// Over [`MAX_SEGMENTS`] segments: no request could match it.
    #[error("the path has too many segments")]
    TooManySegments,
}

/// One template segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    /// Compared byte for byte (case-sensitive) with the decoded request segment.
    Literal(String),
    /// `{name}`: exactly one non-empty segment.
    Param(&'a str),
    /// `{name+}`: one or more segments, the rest of the path.
    Greedy(&'a str),
}

/// A parsed template: its non-empty segments and whether it ends with `/`. The root `/` is no
/// segment and a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template<'a> {
    pub(crate) segments: Vec<Segment<'a>>,
    pub(crate) trailing_slash: bool,
}

impl<'a> Template<'a> {
    /// Names of the parameters, in template order.
    pub(crate) fn param_names(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::Greedy(n) => Some(*n),
            Segment::Literal(_) => None,
        })
    }
}

/// Parses a frontend path template.
pub(crate) fn parse(template: &str) -> Result<Template<'_>, TemplateError> {
    let Some(rest) = template.strip_prefix('/') else {
        return Err(TemplateError::NotAbsolute);
    };
    if template.len() > MAX_PATH_LEN {
        return Err(TemplateError::TooLong);
    }
    if rest.is_empty() {
        // The root: no segment, and the path "ends" with its only slash.
        return Ok(Template {
            segments: Vec::new(),
            trailing_slash: true,
        });
    }
    let (body, trailing_slash) = match rest.strip_suffix('/') {
        Some(body) => (body, true),
        None => (rest, false),
    };
    let mut segments = Vec::new();
    for raw in body.split('/') {
        if segments.len() == MAX_SEGMENTS {
            return Err(TemplateError::TooManySegments);
        }
        if matches!(segments.last(), Some(Segment::Greedy(_))) {
            return Err(TemplateError::GreedyNotLast);
        }
        segments.push(parse_segment(raw)?);
    }
    if trailing_slash && matches!(segments.last(), Some(Segment::Greedy(_))) {
        return Err(TemplateError::GreedyNotLast);
    }
    let t = Template {
        segments,
        trailing_slash,
    };
    let mut seen: Vec<&str> = Vec::new();
    for name in t.param_names() {
        if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return Err(TemplateError::DuplicateParamName(name.to_owned()));
        }
        seen.push(name);
    }
    Ok(t)
}

fn parse_segment(raw: &str) -> Result<Segment<'_>, TemplateError> {
    if raw.is_empty() {
        return Err(TemplateError::EmptySegment);
    }
    if !raw.contains(['{', '}']) {
        let mut out = Vec::with_capacity(raw.len());
        path::decode_segment_into(raw.as_bytes(), &mut out)
            .map_err(TemplateError::InvalidSegment)?;
        let lit = String::from_utf8(out)
            .map_err(|_| TemplateError::InvalidSegment(PathError::InvalidUtf8))?;
        if lit == "." || lit == ".." {
            return Err(TemplateError::DotSegment);
        }
        return Ok(Segment::Literal(lit));
    }
    if let Some(inner) = raw.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        if !inner.contains(['{', '}']) {
            let (name, greedy) = match inner.strip_suffix('+') {
                Some(n) => (n, true),
                None => (inner, false),
            };
            if name.is_empty() {
                return Err(TemplateError::EmptyParamName);
            }
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            {
                return Err(TemplateError::InvalidParamName(name.to_owned()));
            }
            return Ok(if greedy {
                Segment::Greedy(name)
            } else {
                Segment::Param(name)
            });
        }
    }
    // Some brace is misplaced: say whether they pair up at all.
    let mut depth = 0i32;
    for b in raw.bytes() {
        match b {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err(TemplateError::UnbalancedBrace);
        }
    }
    if depth != 0 {
        return Err(TemplateError::UnbalancedBrace);
    }
    Err(TemplateError::MixedSegment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Segment<'_> {
        Segment::Literal(s.to_owned())
    }

    #[test]
    fn parses_valid_templates() {
        let t = parse("/").unwrap();
        assert!(t.segments.is_empty() && t.trailing_slash);
        let t = parse("/a/{id}/b%20c/{rest+}").unwrap();
        assert_eq!(
            t.segments,
            vec![
                lit("a"),
                Segment::Param("id"),
                lit("b c"),
                Segment::Greedy("rest")
            ]
        );
        assert!(!t.trailing_slash);
        let t = parse("/a/").unwrap();
        assert_eq!(t.segments, vec![lit("a")]);
        assert!(t.trailing_slash);
    }

    #[test]
    fn rejects_invalid_templates() {
        use TemplateError::*;
        let cases: &[(&str, TemplateError)] = &[
            ("", NotAbsolute),
            ("a/b", NotAbsolute),
            ("//", EmptySegment),
            ("/a//b", EmptySegment),
            ("/a//", EmptySegment),
            ("/./a", DotSegment),
            ("/a/%2e%2E", DotSegment),
            ("/{}", EmptyParamName),
            ("/{+}", EmptyParamName),
            ("/{a b}", InvalidParamName("a b".into())),
            ("/{a}/{A}", DuplicateParamName("A".into())),
            ("/{a", UnbalancedBrace),
            ("/a}", UnbalancedBrace),
            ("/{{a}}", UnbalancedBrace),
            ("/}a{", UnbalancedBrace),
            ("/{a}{b}", MixedSegment),
            ("/x{a}", MixedSegment),
            ("/{a}.json", MixedSegment),
            ("/{a+}/b", GreedyNotLast),
            ("/{a+}/", GreedyNotLast),
            ("/a%2Fb", InvalidSegment(PathError::EncodedSlash)),
            ("/a%zz", InvalidSegment(PathError::InvalidPercentEncoding)),
            ("/%C0%AF", InvalidSegment(PathError::InvalidUtf8)),
        ];
        for (t, want) in cases {
            assert_eq!(parse(t).as_ref().err(), Some(want), "{t}");
        }
        let long = "/a".repeat(MAX_SEGMENTS + 1);
        assert_eq!(parse(&long).err(), Some(TooManySegments));
        assert!(parse(&"/a".repeat(MAX_SEGMENTS)).is_ok());
        let huge = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(parse(&huge).err(), Some(TooLong));
    }
}
