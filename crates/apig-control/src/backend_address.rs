//! Definition-time half of the backend address policy (SSRF, rows B1/B2): a backend address
//! that is a literal IP in the set the gateway always refuses (`apig_policy::always_refused`:
//! unspecified, link-local and cloud metadata, multicast, broadcast, and their IPv4-mapped
//! forms) is refused with `400 APIG.2022` before anything is stored.
//!
//! Names, `#variables#` and the operator's `--deny-backend-network` list (a gateway flag) are
//! only known at connect time; the gateway checks every resolved address there.

use std::net::IpAddr;

use apig_model::api::ApiSpec;
use apig_model::channel::MemberSpec;
use apig_model::error::{ApiError, ErrorCode};

/// The IP literal of `host[:port]`, `[v6]:port` or a bare IPv6 address, if it is one.
fn literal_ip(address: &str) -> Option<IpAddr> {
    let address = address.trim();
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    if let Ok(ip) = address.parse() {
        return Some(ip);
    }
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
    host.parse().ok()
}

/// Refuses `address` (of the field `field`) when it is an always-refused literal IP.
pub fn check_address(field: &str, address: &str) -> Result<(), ApiError> {
    let Some(ip) = literal_ip(address) else {
        return Ok(());
    };
    match apig_policy::always_refused(ip) {
        None => Ok(()),
        Some(reason) => Err(ApiError::new(
            ErrorCode::BackendAddressRefused,
            format!(
                "The URL domain is included in the IP address blacklist. {field}: {ip} is a \
                 {reason} address, which the gateway never connects to"
            ),
        )),
    }
}

/// The authority of an `http(s)://` function URL.
fn url_authority(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    rest.split(['/', '?']).next()
}

/// Every literal backend address of an API: its backend, its backend policies, its function
/// URLs.
pub fn check_api(spec: &ApiSpec) -> Result<(), ApiError> {
    if let Some(d) = spec
        .backend_api
        .as_ref()
        .and_then(|b| b.url_domain.as_deref())
    {
        check_address("backend_api.url_domain", d)?;
    }
    for policy in spec.policy_https.iter().flatten() {
        if let Some(d) = policy.url_domain.as_deref() {
            check_address("policy_https.url_domain", d)?;
        }
    }
    let function_urls = spec
        .func_info
        .iter()
        .map(|f| ("func_info.function_urn", f.function_urn.as_deref()))
        .chain(
            spec.policy_functions
                .iter()
                .flatten()
                .map(|f| ("policy_functions.function_urn", f.function_urn.as_deref())),
        );
    for (field, url) in function_urls {
        if let Some(authority) = url.and_then(url_authority) {
            check_address(field, authority)?;
        }
    }
    Ok(())
}

/// A function URL (FUNCTION backends, custom authorizers) whose host is an always-refused
/// literal.
pub fn check_function_url(field: &str, url: &str) -> Result<(), ApiError> {
    match url_authority(url) {
        Some(authority) => check_address(field, authority),
        None => Ok(()),
    }
}

/// Channel members given by IP.
pub fn check_members(members: &[MemberSpec]) -> Result<(), ApiError> {
    for m in members {
        if let Some(host) = m.host.as_deref() {
            check_address("members.host", host)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses() {
        for refused in [
            "169.254.169.254",
            "169.254.169.254:80",
            "0.0.0.0:8080",
            "[fe80::1]:80",
            "fe80::1",
            "[::ffff:169.254.169.254]",
            "fd00:ec2::254",
            "224.0.0.1",
            "255.255.255.255:1",
        ] {
            let e = check_address("backend_api.url_domain", refused).unwrap_err();
            assert_eq!((e.status(), e.code.code()), (400, "APIG.2022"), "{refused}");
        }
        for allowed in [
            "127.0.0.1:8080",
            "10.0.0.1",
            "[::1]:80",
            "backend.local:80",
            "#host#:#port#",
            "169.254.169.254.nip.io",
        ] {
            assert!(check_address("f", allowed).is_ok(), "{allowed}");
        }
        assert_eq!(
            url_authority("http://169.254.169.254/latest"),
            Some("169.254.169.254")
        );
        assert_eq!(url_authority("urn:fss:x"), None);
        assert_eq!(
            check_function_url("authorizer_uri", "http://[fe80::1]:80/auth")
                .unwrap_err()
                .code
                .code(),
            "APIG.2022"
        );
        assert!(check_function_url("authorizer_uri", "http://127.0.0.1:9/auth").is_ok());
    }
}
