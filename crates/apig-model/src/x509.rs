//! What a certificate's DER says, for the certificate resource's answers (`common_name`, `san`,
//! `not_after`, `signature_algorithm`, ...): a small, bounded DER reader over the fields APIG
//! shows. It never decides whether a certificate is trusted; the control plane leaves that to
//! rustls/webpki, which the gateway uses too.
//!
//! Pure and panic-free: every read is bounds-checked and every malformed input is an
//! [`X509Error`].

use chrono::{NaiveDateTime, TimeZone, Utc};

/// Why a DER certificate could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum X509Error {
    #[error("truncated DER")]
    Truncated,
    #[error("unsupported DER encoding")]
    Unsupported,
    #[error("expected {expected} in {context}")]
    Unexpected {
        expected: &'static str,
        context: &'static str,
    },
    #[error("invalid time in {0}")]
    Time(&'static str),
    #[error("trailing bytes after the certificate")]
    Trailing,
}

/// The fields of a certificate that the management API shows.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct CertInfo {
    pub version: u32,
    /// Decimal when it fits in 128 bits, else lower-case hex.
    pub serial_number: String,
    /// Go-style names (`SHA256-RSA`, `ECDSA-SHA256`, `Ed25519`), else the dotted OID.
    pub signature_algorithm: String,
    /// `RSA` or `ECC` (EC and Ed25519 keys), else the dotted OID of the key algorithm.
    pub algorithm_type: String,
    /// The issuer's common names (its organisations when it has none).
    pub issuer: Vec<String>,
    pub common_name: String,
    pub organization: Vec<String>,
    pub organizational_unit: Vec<String>,
    pub locality: Vec<String>,
    pub state: Vec<String>,
    pub country: Vec<String>,
    /// DNS names and IP addresses of the subjectAltName extension.
    pub san: Vec<String>,
    /// RFC 3339, UTC.
    pub not_before: String,
    pub not_after: String,
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    /// DER of the subject and issuer names, to check a chain's order.
    #[serde(skip)]
    pub subject_der: Vec<u8>,
    #[serde(skip)]
    pub issuer_der: Vec<u8>,
    /// basicConstraints cA.
    #[serde(skip)]
    pub is_ca: bool,
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION_TAG: u8 = 0xa0;
const EXTENSIONS_TAG: u8 = 0xa3;

/// A cursor over DER TLVs.
struct Der<'a> {
    rest: &'a [u8],
}

/// One TLV: its tag, its content and the whole encoding.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Self { rest }
    }

    fn at_end(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn next(&mut self) -> Result<Tlv<'a>, X509Error> {
        let input = self.rest;
        let tag = *input.first().ok_or(X509Error::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(X509Error::Unsupported);
        }
        let first = *input.get(1).ok_or(X509Error::Truncated)?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(X509Error::Unsupported);
            }
            let bytes = input.get(2..2 + n).ok_or(X509Error::Truncated)?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, 2 + n)
        };
        let end = header.checked_add(len).ok_or(X509Error::Truncated)?;
        let content = input.get(header..end).ok_or(X509Error::Truncated)?;
        let whole = input.get(..end).ok_or(X509Error::Truncated)?;
        self.rest = input.get(end..).unwrap_or_default();
        Ok(Tlv {
            tag,
            content,
            whole,
        })
    }

    fn expect(
        &mut self,
        tag: u8,
        what: &'static str,
        context: &'static str,
    ) -> Result<Tlv<'a>, X509Error> {
        let tlv = self.next()?;
        if tlv.tag != tag {
            return Err(X509Error::Unexpected {
                expected: what,
                context,
            });
        }
        Ok(tlv)
    }
}

/// Reads a DER certificate.
pub fn inspect(der: &[u8]) -> Result<CertInfo, X509Error> {
    let mut outer = Der::new(der);
    let cert = outer.expect(SEQUENCE, "a SEQUENCE", "Certificate")?;
    if !outer.at_end() {
        return Err(X509Error::Trailing);
    }
    let mut cert = Der::new(cert.content);
    let tbs = cert.expect(SEQUENCE, "a SEQUENCE", "TBSCertificate")?;
    let sig_alg = cert.expect(SEQUENCE, "a SEQUENCE", "signatureAlgorithm")?;
    let mut tbs = Der::new(tbs.content);

    let mut info = CertInfo {
        version: 1,
        ..CertInfo::default()
    };
    if tbs.peek_tag() == Some(VERSION_TAG) {
        let v = tbs.next()?;
        let n = Der::new(v.content).expect(INTEGER, "an INTEGER", "version")?;
        info.version = match n.content {
            [v] if *v < 3 => u32::from(*v) + 1,
            _ => return Err(X509Error::Unsupported),
        };
    }
    let serial = tbs.expect(INTEGER, "an INTEGER", "serialNumber")?;
    info.serial_number = serial_string(serial.content);
    tbs.expect(SEQUENCE, "a SEQUENCE", "signature")?;
    let issuer = tbs.expect(SEQUENCE, "a SEQUENCE", "issuer")?;
    let validity = tbs.expect(SEQUENCE, "a SEQUENCE", "validity")?;
    let subject = tbs.expect(SEQUENCE, "a SEQUENCE", "subject")?;
    let spki = tbs.expect(SEQUENCE, "a SEQUENCE", "subjectPublicKeyInfo")?;

    let issuer_name = Name::read(issuer.content)?;
    info.issuer = if issuer_name.cn.is_empty() {
        issuer_name.o.clone()
    } else {
        issuer_name.cn.clone()
    };
    info.issuer_der = issuer.whole.to_vec();
    let subject_name = Name::read(subject.content)?;
    info.common_name = subject_name.cn.first().cloned().unwrap_or_default();
    info.organization = subject_name.o;
    info.organizational_unit = subject_name.ou;
    info.locality = subject_name.l;
    info.state = subject_name.st;
    info.country = subject_name.c;
    info.subject_der = subject.whole.to_vec();

    let mut validity = Der::new(validity.content);
    let (nb, nb_text) = read_time(&mut validity, "notBefore")?;
    let (na, na_text) = read_time(&mut validity, "notAfter")?;
    info.not_before_unix = nb;
    info.not_before = nb_text;
    info.not_after_unix = na;
    info.not_after = na_text;

    let mut spki = Der::new(spki.content);
    let key_alg = spki.expect(SEQUENCE, "a SEQUENCE", "subjectPublicKeyInfo.algorithm")?;
    let key_oid = Der::new(key_alg.content).expect(OID, "an OID", "key algorithm")?;
    info.algorithm_type = match key_oid.content {
        // rsaEncryption, RSASSA-PSS
        [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]
        | [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a] => "RSA".to_owned(),
        // id-ecPublicKey, Ed25519, Ed448
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01] | [0x2b, 0x65, 0x70] | [0x2b, 0x65, 0x71] => {
            "ECC".to_owned()
        }
        other => dotted(other),
    };
    spki.expect(BIT_STRING, "a BIT STRING", "subjectPublicKey")?;

    while !tbs.at_end() {
        let field = tbs.next()?;
        if field.tag == EXTENSIONS_TAG {
            read_extensions(field.content, &mut info)?;
        }
    }

    let sig_oid = Der::new(sig_alg.content).expect(OID, "an OID", "signatureAlgorithm")?;
    info.signature_algorithm = signature_name(sig_oid.content);
    Ok(info)
}

fn read_extensions(explicit: &[u8], info: &mut CertInfo) -> Result<(), X509Error> {
    let list = Der::new(explicit).expect(SEQUENCE, "a SEQUENCE", "extensions")?;
    let mut list = Der::new(list.content);
    while !list.at_end() {
        let ext = list.expect(SEQUENCE, "a SEQUENCE", "extension")?;
        let mut ext = Der::new(ext.content);
        let oid = ext.expect(OID, "an OID", "extension")?;
        if ext.peek_tag() == Some(BOOLEAN) {
            ext.next()?;
        }
        let value = ext.expect(OCTET_STRING, "an OCTET STRING", "extension")?;
        match oid.content {
            // subjectAltName
            [0x55, 0x1d, 0x11] => {
                let names =
                    Der::new(value.content).expect(SEQUENCE, "a SEQUENCE", "subjectAltName")?;
                let mut names = Der::new(names.content);
                while !names.at_end() {
                    let n = names.next()?;
                    match (n.tag, n.content.len()) {
                        // dNSName
                        (0x82, _) => info
                            .san
                            .push(String::from_utf8_lossy(n.content).into_owned()),
                        // iPAddress
                        (0x87, 4) => info.san.push(
                            n.content
                                .iter()
                                .map(u8::to_string)
                                .collect::<Vec<_>>()
                                .join("."),
                        ),
                        (0x87, 16) => {
                            let mut octets = [0u8; 16];
                            octets.copy_from_slice(n.content);
                            info.san.push(std::net::Ipv6Addr::from(octets).to_string());
                        }
                        _ => {}
                    }
                }
            }
            // basicConstraints
            [0x55, 0x1d, 0x13] => {
                let bc =
                    Der::new(value.content).expect(SEQUENCE, "a SEQUENCE", "basicConstraints")?;
                let mut bc = Der::new(bc.content);
                if bc.peek_tag() == Some(BOOLEAN) {
                    info.is_ca = bc.next()?.content.first().is_some_and(|b| *b != 0);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The attributes of a Name that APIG shows.
#[derive(Default)]
struct Name {
    cn: Vec<String>,
    o: Vec<String>,
    ou: Vec<String>,
    l: Vec<String>,
    st: Vec<String>,
    c: Vec<String>,
}

impl Name {
    fn read(rdns: &[u8]) -> Result<Self, X509Error> {
        let mut out = Name::default();
        let mut rdns = Der::new(rdns);
        while !rdns.at_end() {
            let set = rdns.expect(SET, "a SET", "Name")?;
            let mut set = Der::new(set.content);
            while !set.at_end() {
                let atv = set.expect(SEQUENCE, "a SEQUENCE", "AttributeTypeAndValue")?;
                let mut atv = Der::new(atv.content);
                let oid = atv.expect(OID, "an OID", "AttributeTypeAndValue")?;
                let value = atv.next()?;
                let target = match oid.content {
                    [0x55, 0x04, 0x03] => &mut out.cn,
                    [0x55, 0x04, 0x06] => &mut out.c,
                    [0x55, 0x04, 0x07] => &mut out.l,
                    [0x55, 0x04, 0x08] => &mut out.st,
                    [0x55, 0x04, 0x0a] => &mut out.o,
                    [0x55, 0x04, 0x0b] => &mut out.ou,
                    _ => continue,
                };
                target.push(directory_string(value.tag, value.content));
            }
        }
        Ok(out)
    }
}

fn directory_string(tag: u8, bytes: &[u8]) -> String {
    match tag {
        // BMPString: UTF-16BE.
        0x1e => {
            let units: Vec<u16> = bytes
                .chunks(2)
                .map(|c| u16::from_be_bytes([*c.first().unwrap_or(&0), *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        // T61String: treated as Latin-1.
        0x14 => bytes.iter().map(|b| char::from(*b)).collect(),
        // UTF8String, PrintableString, IA5String and the rest.
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn read_time(d: &mut Der<'_>, field: &'static str) -> Result<(i64, String), X509Error> {
    let t = d.next()?;
    let text = std::str::from_utf8(t.content).map_err(|_| X509Error::Time(field))?;
    let (full, fmt) = match t.tag {
        UTC_TIME => {
            let yy: i32 = text
                .get(..2)
                .and_then(|y| y.parse().ok())
                .ok_or(X509Error::Time(field))?;
            let century = if yy < 50 { "20" } else { "19" };
            (format!("{century}{text}"), "%Y%m%d%H%M%SZ")
        }
        GENERALIZED_TIME => (text.to_owned(), "%Y%m%d%H%M%SZ"),
        _ => {
            return Err(X509Error::Unexpected {
                expected: "a UTCTime or GeneralizedTime",
                context: field,
            })
        }
    };
    let naive = NaiveDateTime::parse_from_str(&full, fmt).map_err(|_| X509Error::Time(field))?;
    let utc = Utc.from_utc_datetime(&naive);
    Ok((
        utc.timestamp(),
        utc.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    ))
}

fn serial_string(bytes: &[u8]) -> String {
    let trimmed: &[u8] = match bytes {
        [0, rest @ ..] if !rest.is_empty() => rest,
        b => b,
    };
    if trimmed.len() <= 16 {
        let n = trimmed
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
        n.to_string()
    } else {
        trimmed.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn signature_name(oid: &[u8]) -> String {
    const RSA: [u8; 8] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA: [u8; 7] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    let name = match oid {
        [p @ .., last] if p == RSA => match last {
            0x04 => "MD5-RSA",
            0x05 => "SHA1-RSA",
            0x0a => "RSA-PSS",
            0x0b => "SHA256-RSA",
            0x0c => "SHA384-RSA",
            0x0d => "SHA512-RSA",
            _ => "",
        },
        [p @ .., last] if p == ECDSA => match last {
            0x02 => "ECDSA-SHA256",
            0x03 => "ECDSA-SHA384",
            0x04 => "ECDSA-SHA512",
            _ => "",
        },
        [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01] => "ECDSA-SHA1",
        [0x2b, 0x65, 0x70] => "Ed25519",
        _ => "",
    };
    if name.is_empty() {
        dotted(oid)
    } else {
        name.to_owned()
    }
}

/// An OID's dotted form (`1.2.840.113549`).
fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u128> = Vec::new();
    let mut acc: u128 = 0;
    for b in oid {
        acc = (acc << 7) | u128::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u128::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            &[0x30],
            &[0x30, 0x85, 0, 0, 0, 0, 0],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x02, 0x30, 0x00],
            &[0x30, 0x00, 0x00],
            &[0x1f, 0x00],
        ] {
            assert!(inspect(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn oids_and_serials() {
        assert_eq!(
            dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]),
            "1.2.840.113549"
        );
        assert_eq!(
            signature_name(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]),
            "SHA256-RSA"
        );
        assert_eq!(
            signature_name(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
            "ECDSA-SHA256"
        );
        assert_eq!(serial_string(&[0x00, 0x32, 0xd2]), "13010");
        assert_eq!(serial_string(&[0xab; 20]), "ab".repeat(20));
    }
}
