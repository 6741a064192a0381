//! Percent-encoding exactly as the Python signers' `quote(s, safe='~')`, and a strict decoder.

use std::borrow::Cow;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::SignError;

/// Everything but RFC 3986 unreserved characters is escaped (uppercase hex), like Python 3.7+
/// `quote(s, safe='~')`.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(crate) fn encode_into(out: &mut String, s: &str) {
    for chunk in utf8_percent_encode(s, ESCAPED) {
        out.push_str(chunk);
    }
}

/// Strict percent-decoding. Python's `unquote` would pass a bad escape through and replace
/// invalid UTF-8 with U+FFFD; accepting either would make distinct wire requests share one
/// canonical form, so both are errors here.
pub(crate) fn decode(s: &str) -> Result<Cow<'_, str>, SignError> {
    if !s.contains('%') {
        return Ok(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|&c| hex_val(c));
            let lo = bytes.get(i + 2).and_then(|&c| hex_val(c));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(SignError::InvalidEncoding),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| SignError::InvalidEncoding)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        let mut out = String::new();
        encode_into(&mut out, s);
        out
    }

    #[test]
    fn encodes_like_python_quote_safe_tilde() {
        assert_eq!(enc("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(enc("a b+c/d?e=f&g"), "a%20b%2Bc%2Fd%3Fe%3Df%26g");
        assert_eq!(
            enc("!*'();:@$,[]#%"),
            "%21%2A%27%28%29%3B%3A%40%24%2C%5B%5D%23%25"
        );
        assert_eq!(enc("é中"), "%C3%A9%E4%B8%AD");
    }

    #[test]
    fn decodes_strictly() {
        assert_eq!(decode("a%20b").as_deref(), Ok("a b"));
        assert_eq!(decode("a%2fb%2F").as_deref(), Ok("a/b/"));
        assert_eq!(decode("a+b").as_deref(), Ok("a+b"));
        assert_eq!(decode("%E4%B8%AD").as_deref(), Ok("中"));
        for bad in [
            "%",
            "%2",
            "a%zz",
            "%g0",
            "%%",
            "%FF",
            "%C3",
            "%C3%28",
            "%ED%A0%80",
        ] {
            assert_eq!(decode(bad), Err(SignError::InvalidEncoding), "{bad}");
        }
    }
}
