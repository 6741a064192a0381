//! Typed reads of document fields: a field of the wrong shape is an error naming it, never
//! a silent default.

use apig_model::ApiError;
use serde_json::{Map, Value};

pub type Obj = Map<String, Value>;

pub fn obj<'a>(v: &'a Value, field: &str) -> Result<&'a Obj, ApiError> {
    v.as_object()
        .ok_or_else(|| ApiError::invalid(field, "an object"))
}

pub fn opt_obj<'a>(o: &'a Obj, key: &str, field: &str) -> Result<Option<&'a Obj>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => obj(v, &format!("{field}.{key}")).map(Some),
    }
}

pub fn opt_array<'a>(o: &'a Obj, key: &str, field: &str) -> Result<&'a [Value], ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(ApiError::invalid(&format!("{field}.{key}"), "a list")),
    }
}

/// A text field; numbers and booleans are read as their text (YAML's `version: 1.0`).
pub fn opt_string(o: &Obj, key: &str, field: &str) -> Result<Option<String>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(v.to_string())),
        Some(_) => Err(ApiError::invalid(&format!("{field}.{key}"), "a string")),
    }
}

/// An integer field; an integral text (`retryCount: "-1"`) is read too.
pub fn opt_int(o: &Obj, key: &str, field: &str) -> Result<Option<i64>, ApiError> {
    let bad = || ApiError::invalid(&format!("{field}.{key}"), "an integer");
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(f as i64)),
            _ => Err(bad()),
        },
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

pub fn opt_bool(o: &Obj, key: &str, field: &str) -> Result<Option<bool>, ApiError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::invalid(
            &format!("{field}.{key}"),
            "true or false",
        )),
    }
}

/// A scalar as text (a parameter's `default`, an `enum` member).
pub fn scalar_text(v: &Value, field: &str) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(_) | Value::Bool(_) => Ok(v.to_string()),
        _ => Err(ApiError::invalid(field, "a string, number or boolean")),
    }
}
