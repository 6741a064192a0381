//! Reading an import document (JSON or YAML) into a `serde_json::Value`, bounded.
//!
//! The document is untrusted: its size is capped before parsing, and the value is built
//! through a [`Budget`] that counts every node and every string byte the parser hands over,
//! so YAML aliases that expand exponentially ("billion laughs") or a flat document that
//! repeats one large anchor many times are refused as soon as they cross the budget, not
//! after they filled memory. Nesting is capped too (the parsers also stop at 128 levels).

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::ImportError;

/// Largest import document: the management API's body limit (the multipart form around it
/// counts against that too).
pub const MAX_DOCUMENT_BYTES: usize = 8 * 1024 * 1024;
/// Most nodes (scalars, lists, maps) a document may expand to, aliases included.
pub const MAX_NODES: usize = 1_000_000;
/// Most string bytes a document may expand to, aliases included.
pub const MAX_STRING_BYTES: usize = 4 * MAX_DOCUMENT_BYTES;
/// Deepest nesting of lists and maps.
pub const MAX_DEPTH: usize = 64;

/// Parses `bytes` as JSON (when it starts with `{`) or YAML, within the limits above.
pub fn parse_document(bytes: &[u8]) -> Result<Value, ImportError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(ImportError::TooLarge {
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| ImportError::Syntax {
        format: "document",
        why: "not UTF-8 text".into(),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let budget = Budget::default();
    let seed = Node {
        budget: &budget,
        depth: 0,
    };
    let value = if text.trim_start().starts_with('{') {
        let mut de = serde_json::Deserializer::from_str(text);
        let v = seed.deserialize(&mut de).map_err(|e| syntax("JSON", e))?;
        de.end().map_err(|e| syntax("JSON", e))?;
        v
    } else {
        seed.deserialize(yaml_serde::Deserializer::from_str(text))
            .map_err(|e| syntax("YAML", e))?
    };
    if let Some(reason) = budget.exceeded.get() {
        return Err(ImportError::Hostile(reason));
    }
    Ok(value)
}

fn syntax(format: &'static str, e: impl fmt::Display) -> ImportError {
    let why = e.to_string();
    // The budget's own refusal travels as a parser error; name it as what it is.
    if let Some(reason) = [EXPANSION, STRINGS, NESTING]
        .into_iter()
        .find(|r| why.contains(r))
    {
        return ImportError::Hostile(reason);
    }
    // The YAML parser's own guards against alias replay and recursion.
    if why.contains("repetition limit exceeded") {
        return ImportError::Hostile(EXPANSION);
    }
    if why.contains("recursion limit exceeded") {
        return ImportError::Hostile(NESTING);
    }
    ImportError::Syntax {
        format,
        why: why.chars().take(300).collect(),
    }
}

const EXPANSION: &str = "the document expands to too many nodes (YAML aliases?)";
const STRINGS: &str = "the document expands to too much text (YAML aliases?)";
const NESTING: &str = "the document nests too deeply";

#[derive(Default)]
struct Budget {
    nodes: Cell<usize>,
    string_bytes: Cell<usize>,
    exceeded: Cell<Option<&'static str>>,
}

impl Budget {
    fn node<E: de::Error>(&self) -> Result<(), E> {
        let n = self.nodes.get() + 1;
        self.nodes.set(n);
        if n > MAX_NODES {
            return Err(self.refuse(EXPANSION));
        }
        Ok(())
    }

    fn string<E: de::Error>(&self, len: usize) -> Result<(), E> {
        let n = self.string_bytes.get().saturating_add(len);
        self.string_bytes.set(n);
        if n > MAX_STRING_BYTES {
            return Err(self.refuse(STRINGS));
        }
        Ok(())
    }

    fn refuse<E: de::Error>(&self, reason: &'static str) -> E {
        self.exceeded.set(Some(reason));
        E::custom(reason)
    }
}

/// One node of the document, built under the budget.
#[derive(Clone, Copy)]
struct Node<'b> {
    budget: &'b Budget,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.budget.node()?;
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-compatible value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // NaN and infinities have no JSON form; they become null like serde_json does.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.budget.string(v.len())?;
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.budget.string(v.len())?;
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.deeper()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(inner)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.deeper()?;
        let mut out = Map::new();
        while let Some(k) = map.next_key_seed(Key(self.budget))? {
            let v = map.next_value_seed(inner)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

impl Node<'_> {
    fn deeper<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(self.budget.refuse(NESTING));
        }
        Ok(Node {
            budget: self.budget,
            depth: self.depth + 1,
        })
    }
}

/// A map key: YAML allows numbers and booleans as keys (`200:` in `responses`); JSON
/// objects need strings, so they are written the way YAML would print them.
#[derive(Clone, Copy)]
struct Key<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        self.0.node()?;
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean key")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.0.string(v.len())?;
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.0.string(v.len())?;
        Ok(v)
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok("null".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_give_the_same_value() {
        let j = parse_document(br#"{"swagger":"2.0","paths":{"/a":{"get":{"responses":{"200":{"description":"ok"}}}}}}"#).unwrap();
        let y = parse_document(
            b"swagger: '2.0'\npaths:\n  /a:\n    get:\n      responses:\n        200:\n          description: ok\n",
        )
        .unwrap();
        assert_eq!(j, y);
    }

    #[test]
    fn billion_laughs_is_refused_fast() {
        let mut doc = String::from(
            "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            let refs = [prev.as_str(); 9].join(",");
            doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let start = std::time::Instant::now();
        let e = parse_document(doc.as_bytes()).unwrap_err();
        assert!(matches!(e, ImportError::Hostile(_)), "{e}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn one_large_anchor_repeated_is_refused() {
        // Few jumps, each replaying a big anchor: the parser's own repetition limit lets this
        // through (jumps < 100 × events); the node budget does not.
        let big: Vec<String> = (0..20_000).map(|i| format!("k{i}")).collect();
        let mut doc = format!("big: &big [{}]\nrefs:\n", big.join(","));
        for _ in 0..200 {
            doc.push_str("  - *big\n");
        }
        let e = parse_document(doc.as_bytes()).unwrap_err();
        assert!(matches!(e, ImportError::Hostile(_)), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse_document(format!("{{\"a\":{deep}}}").as_bytes()).is_err());
        assert!(parse_document(format!("a: {deep}").as_bytes()).is_err());
    }

    #[test]
    fn oversized_and_malformed_documents_are_refused() {
        let huge = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        assert!(matches!(
            parse_document(&huge),
            Err(ImportError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_document(b"{\"a\":"),
            Err(ImportError::Syntax { .. })
        ));
        assert!(matches!(
            parse_document(b"a: [b\n c: ]: d"),
            Err(ImportError::Syntax { .. })
        ));
        assert!(parse_document(b"\xff\xfe").is_err());
    }
}
