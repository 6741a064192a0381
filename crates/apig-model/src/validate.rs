//! Field rules shared by the resources, and a collector that reports every problem of a request
//! at once (the first problem decides the APIG code; the message lists them all).

use std::sync::LazyLock;

use regex::Regex;

use crate::{ApiError, ErrorCode};

/// Collects validation problems.
#[derive(Default, Debug)]
pub struct Problems {
    first: Option<ErrorCode>,
    messages: Vec<String>,
}

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, e: ApiError) {
        self.first.get_or_insert(e.code);
        // Bounded: a hostile body with thousands of bad fields gets a readable answer.
        if self.messages.len() < 20 {
            self.messages.push(e.message);
        }
    }

    pub fn check(&mut self, r: Result<(), ApiError>) {
        if let Err(e) = r {
            self.push(e);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        match self.first {
            None => Ok(()),
            Some(code) => Err(ApiError::new(code, self.messages.join("; "))),
        }
    }
}

static API_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9\p{Han}][A-Za-z0-9\p{Han}\-_./()（）:：、]{2,254}$")
        .expect("static regex")
});
static GROUP_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9\p{Han}][A-Za-z0-9\p{Han}\-_./()（）:：、]{2,254}$")
        .expect("static regex")
});
static ENV_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9_]{2,63}$").expect("static regex"));
static INSTANCE_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z\p{Han}][A-Za-z0-9\p{Han}\-_]{2,63}$").expect("static regex")
});
static VARIABLE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9_-]{2,31}$").expect("static regex"));
static VARIABLE_VALUE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9_\-/.:]{1,255}$").expect("static regex"));
static CERTIFICATE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9_]{3,49}$").expect("static regex"));
static PARAM_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9\-_.]{0,31}$").expect("static regex"));

fn by_regex(name: &str, value: &str, re: &Regex, rule: &str) -> Result<(), ApiError> {
    if re.is_match(value) {
        Ok(())
    } else {
        Err(ApiError::invalid(name, rule))
    }
}

pub fn certificate_name(v: &str) -> Result<(), ApiError> {
    by_regex(
        "name",
        v,
        &CERTIFICATE_NAME,
        "4 to 50 characters: letters, digits and underscores, starting with a letter",
    )
}

pub fn api_name(v: &str) -> Result<(), ApiError> {
    by_regex("name", v, &API_NAME, "3 to 255 characters: letters, digits, Chinese characters and -_./():, starting with a letter, digit or Chinese character")
}

pub fn group_name(v: &str) -> Result<(), ApiError> {
    by_regex("name", v, &GROUP_NAME, "3 to 255 characters: letters, digits, Chinese characters and -_./():, starting with a letter, digit or Chinese character")
}

pub fn env_name(v: &str) -> Result<(), ApiError> {
    by_regex(
        "name",
        v,
        &ENV_NAME,
        "3 to 64 characters: letters, digits and underscores, starting with a letter",
    )
}

static APP_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z\p{Han}][A-Za-z0-9\p{Han}_]{2,63}$").expect("static regex")
});

pub fn app_name(v: &str) -> Result<(), ApiError> {
    by_regex(
        "name",
        v,
        &APP_NAME,
        "3 to 64 characters: letters, digits, Chinese characters and underscores, starting with a letter or Chinese character",
    )
}

pub fn instance_name(v: &str) -> Result<(), ApiError> {
    by_regex(
        "instance_name",
        v,
        &INSTANCE_NAME,
        "3 to 64 characters: letters, digits, hyphens and underscores, starting with a letter",
    )
}

pub fn variable_name(v: &str) -> Result<(), ApiError> {
    by_regex(
        "variable_name",
        v,
        &VARIABLE_NAME,
        "3 to 32 characters: letters, digits, hyphens and underscores, starting with a letter",
    )
}

pub fn variable_value(v: &str) -> Result<(), ApiError> {
    by_regex(
        "variable_value",
        v,
        &VARIABLE_VALUE,
        "1 to 255 characters: letters, digits and _-/.:",
    )
}

pub fn param_name(field: &str, v: &str) -> Result<(), ApiError> {
    by_regex(
        field,
        v,
        &PARAM_NAME,
        "1 to 32 characters: letters, digits and -_., starting with a letter",
    )
}

/// At most `max` characters (not bytes: Chinese text counts per character, as APIG does).
pub fn max_chars(field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.chars().count() > max {
        Err(ApiError::invalid(
            field,
            format!("at most {max} characters are allowed"),
        ))
    } else {
        Ok(())
    }
}

/// Required string: present and not blank.
pub fn required<'a>(field: &str, v: &'a Option<String>) -> Result<&'a str, ApiError> {
    match v.as_deref() {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(ApiError::required(field)),
    }
}

/// One of the allowed values (exact, case-sensitive as APIG's enums are).
pub fn one_of(field: &str, v: &str, allowed: &[&str]) -> Result<(), ApiError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!("must be one of {}", allowed.join(", ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(api_name("get_user").is_ok());
        assert!(api_name("用户查询").is_ok());
        assert!(api_name("ab").is_err());
        assert!(api_name("-abc").is_err());
        assert!(api_name(&"a".repeat(256)).is_err());
        assert!(env_name("DEV_1").is_ok());
        assert!(env_name("1dev").is_err());
        assert!(variable_name("backend-host").is_ok());
        assert!(variable_value("10.0.0.1:8080").is_ok());
        assert!(variable_value("a b").is_err());
        assert!(param_name("name", "X-Trace.id").is_ok());
        assert!(param_name("name", "_x").is_err());
        assert!(group_name("group(v1).svc").is_ok());
        assert!(instance_name("gw-1").is_ok());
    }

    #[test]
    fn problems_collect_all_and_keep_first_code() {
        let mut p = Problems::new();
        p.push(ApiError::required("name"));
        p.push(ApiError::invalid("type", "bad"));
        let e = p.into_result().unwrap_err();
        assert_eq!(e.code, ErrorCode::ParameterRequired);
        assert!(e.message.contains("name") && e.message.contains("type"));
    }
}
