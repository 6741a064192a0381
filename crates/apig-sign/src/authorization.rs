//! The `Authorization` header: `SDK-HMAC-SHA256 Access=AK, SignedHeaders=a;b, Signature=hex`.

use crate::{SignError, ALGORITHM, MAX_AUTHORIZATION_LEN, MAX_SIGNED_HEADERS};

/// A parsed `Authorization` header, borrowing from the header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access: &'a str,
    /// Lowercase names, in the order the signer listed them (the order they were hashed in).
    pub signed_headers: Vec<&'a str>,
    /// 64 hex digits.
    pub signature: &'a str,
}

impl<'a> Authorization<'a> {
    /// Parses the header value.
    ///
    /// Strict where ambiguity could matter (algorithm token, field names, each field exactly
    /// once, lowercase token header names without duplicates, 64-hex signature, the length
    /// bounds), tolerant of whitespace around fields, which some hand-written clients add.
    pub fn parse(header_value: &'a str) -> Result<Self, SignError> {
        use SignError::MalformedAuthorization as Malformed;
        if header_value.len() > MAX_AUTHORIZATION_LEN {
            return Err(Malformed("header too long"));
        }
        let value = header_value.trim_matches(is_space);
        let (algorithm, rest) = value
            .split_once(is_space)
            .ok_or(Malformed("no credentials after the algorithm"))?;
        if algorithm != ALGORITHM {
            return Err(Malformed("unsupported algorithm"));
        }
        let (mut access, mut signed, mut signature) = (None, None, None);
        for field in rest.split(',') {
            let field = field.trim_matches(is_space);
            let (name, val) = field
                .split_once('=')
                .ok_or(Malformed("field without '='"))?;
            let slot = match name {
                "Access" => &mut access,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(Malformed("unknown field")),
            };
            if slot.replace(val).is_some() {
                return Err(Malformed("repeated field"));
            }
        }
        let access = access.ok_or(Malformed("Access is missing"))?;
        if access.is_empty() || access.contains(is_space) {
            return Err(Malformed("Access is empty or contains spaces"));
        }
        let signed = signed.ok_or(Malformed("SignedHeaders is missing"))?;
        let mut signed_headers: Vec<&str> = Vec::new();
        for name in signed.split(';') {
            if !is_valid_header_name(name) {
                return Err(Malformed("invalid name in SignedHeaders"));
            }
            if signed_headers.len() == MAX_SIGNED_HEADERS {
                return Err(Malformed("too many SignedHeaders"));
            }
            if signed_headers.contains(&name) {
                return Err(Malformed("repeated name in SignedHeaders"));
            }
            signed_headers.push(name);
        }
        let signature = signature.ok_or(Malformed("Signature is missing"))?;
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Malformed("Signature is not 64 hex digits"));
        }
        Ok(Authorization {
            access,
            signed_headers,
            signature,
        })
    }
}

/// Formats the header value the way both Python signers do.
pub fn authorization_header(access: &str, signed_headers: &[&str], signature: &str) -> String {
    format!(
        "{ALGORITHM} Access={access}, SignedHeaders={}, Signature={signature}",
        signed_headers.join(";")
    )
}

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// A lowercase RFC 9110 token: what can be listed in `SignedHeaders` without ambiguity.
pub(crate) fn is_valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIG: &str = "2cdaa154ff349e3e1a592900e739155712dec2a246496e002136d28720e48616";

    fn malformed(v: &str) -> bool {
        matches!(
            Authorization::parse(v),
            Err(SignError::MalformedAuthorization(_))
        )
    }

    #[test]
    fn parses_sdk_output() {
        let v = format!("SDK-HMAC-SHA256 Access=AK123, SignedHeaders=content-type;host;x-sdk-date, Signature={SIG}");
        let a = Authorization::parse(&v).unwrap();
        assert_eq!(a.access, "AK123");
        assert_eq!(a.signed_headers, ["content-type", "host", "x-sdk-date"]);
        assert_eq!(a.signature, SIG);
        assert_eq!(
            authorization_header(a.access, &a.signed_headers, a.signature),
            v
        );
    }

    #[test]
    fn tolerates_spacing_and_field_order() {
        for v in [
            format!("SDK-HMAC-SHA256 Access=AK,SignedHeaders=host;x-sdk-date,Signature={SIG}"),
            format!("  SDK-HMAC-SHA256   Access=AK ,  SignedHeaders=host;x-sdk-date ,\tSignature={SIG} "),
            format!("SDK-HMAC-SHA256 Signature={SIG}, Access=AK, SignedHeaders=host;x-sdk-date"),
        ] {
            let a = Authorization::parse(&v).unwrap();
            assert_eq!((a.access, a.signature), ("AK", SIG), "{v}");
            assert_eq!(a.signed_headers, ["host", "x-sdk-date"]);
        }
    }

    #[test]
    fn rejects_malformed() {
        let ok_tail = format!("Access=AK, SignedHeaders=host;x-sdk-date, Signature={SIG}");
        assert!(malformed(&format!("sdk-hmac-sha256 {ok_tail}")));
        assert!(malformed(&format!("SDK-HMAC-SM3 {ok_tail}")));
        assert!(malformed(&format!("V11-HMAC-SHA256 {ok_tail}")));
        assert!(malformed(&format!("SDK-HMAC-SHA256,{ok_tail}")));
        assert!(malformed("SDK-HMAC-SHA256"));
        assert!(malformed(""));
        assert!(malformed(&format!("Basic {ok_tail}")));
        assert!(malformed(&format!(
            "SDK-HMAC-SHA256 Access=, SignedHeaders=host, Signature={SIG}"
        )));
        assert!(malformed(&format!(
            "SDK-HMAC-SHA256 Access=A K, SignedHeaders=host, Signature={SIG}"
        )));
        assert!(malformed(&format!(
            "SDK-HMAC-SHA256 SignedHeaders=host, Signature={SIG}"
        )));
        assert!(malformed("SDK-HMAC-SHA256 Access=AK, SignedHeaders=host"));
        assert!(malformed(&format!(
            "SDK-HMAC-SHA256 Access=AK, Signature={SIG}"
        )));
        assert!(malformed(&format!("SDK-HMAC-SHA256 {ok_tail}, Access=AK2")));
        assert!(malformed(&format!("SDK-HMAC-SHA256 {ok_tail}, Extra=1")));
        assert!(malformed(&format!("SDK-HMAC-SHA256 {ok_tail},")));
        assert!(malformed(&format!(
            "SDK-HMAC-SHA256 access=AK, SignedHeaders=host, Signature={SIG}"
        )));
        assert!(malformed(&format!(
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=Host;x-sdk-date, Signature={SIG}"
        )));
        assert!(malformed(&format!(
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;;x-sdk-date, Signature={SIG}"
        )));
        assert!(malformed(&format!(
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;host, Signature={SIG}"
        )));
        assert!(malformed(&format!(
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=, Signature={SIG}"
        )));
        assert!(malformed(&format!(
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=a b, Signature={SIG}"
        )));
        assert!(malformed(
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature=abc"
        ));
        assert!(malformed(&format!(
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature={SIG}0"
        )));
        let not_hex = SIG.replace('a', "g");
        assert!(malformed(&format!(
            "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host, Signature={not_hex}"
        )));
    }

    #[test]
    fn bounds() {
        let names: Vec<String> = (0..MAX_SIGNED_HEADERS).map(|i| format!("h{i}")).collect();
        let mut refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let at_limit = authorization_header("AK", &refs, SIG);
        assert_eq!(
            Authorization::parse(&at_limit)
                .unwrap()
                .signed_headers
                .len(),
            64
        );
        refs.push("one-more");
        assert!(malformed(&authorization_header("AK", &refs, SIG)));

        let pad = MAX_AUTHORIZATION_LEN - authorization_header("", &["host"], SIG).len();
        let at_len = authorization_header(&"k".repeat(pad), &["host"], SIG);
        assert_eq!(at_len.len(), MAX_AUTHORIZATION_LEN);
        assert!(Authorization::parse(&at_len).is_ok());
        let over = authorization_header(&"k".repeat(pad + 1), &["host"], SIG);
        assert!(malformed(&over));
    }
}
