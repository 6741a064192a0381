//! A7 (../shared/reference/reliability-and-security.md §3): checking a wrong signature must cost
//! the same wherever it differs from the right one, or the time of each answer tells an
//! attacker how many leading bytes they got right.
//!
//! Wall-clock samples cannot show that reliably on a shared machine (the comparison is a few
//! nanoseconds next to microseconds of hashing and scheduling noise). Instructions can: this
//! test runs [`verify`] under valgrind's callgrind, counting only inside `verify_many`, once
//! with the signature wrong in its first hex digit and once wrong in its last, and asserts the
//! two counts are identical. A control, an early-exit comparison measured the same way, must
//! differ between the same two inputs, which shows the measurement can see a leak at all.
//!
//! The test re-runs its own binary as the measured child (selected by an environment variable).
//! It needs `valgrind` (Debian's package; `.ci/run` installs it).

use std::hint::black_box;
use std::process::Command;

use apig_sign::{verify, RequestView, Signer};

const CHILD: &str = "APIG_SIGN_CONSTANT_TIME_CASE";
const ROUNDS: usize = 50;
const NOW: i64 = 1_704_067_200;
const SIGNER: Signer<'static> = Signer {
    key: "app-key",
    secret: b"app-secret",
};

/// The signed request's headers, with the signature's hex digit at `at` changed (within its
/// class, digit or letter, so hex decoding takes the same path).
fn headers_wrong_at(at: Option<usize>) -> Vec<(String, String)> {
    let base = [
        ("host", "api.example.com"),
        ("content-type", "application/json"),
    ];
    let req = RequestView {
        method: "POST",
        path: "/orders/",
        query: Some("b=2&a=1"),
        headers: &base,
    };
    let mut headers: Vec<(String, String)> = base
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
    headers.extend(SIGNER.sign(&req, b"{}", NOW).expect("signs"));
    if let Some(at) = at {
        let auth = headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
            .expect("an Authorization header");
        let start = auth.1.find("Signature=").expect("a signature") + "Signature=".len();
        let mut bytes = auth.1.clone().into_bytes();
        let i = start + at;
        bytes[i] = match bytes[i] {
            b'9' => b'8',
            b'f' => b'e',
            c => c + 1,
        };
        auth.1 = String::from_utf8(bytes).expect("ASCII");
    }
    headers
}

/// The measured work: `ROUNDS` verifications of the same request. Never inlined, so that
/// callgrind can count inside it by name.
#[inline(never)]
fn verify_many(headers: &[(&str, &str)]) -> usize {
    let req = RequestView {
        method: "POST",
        path: "/orders/",
        query: Some("b=2&a=1"),
        headers,
    };
    // Plain loops, no closures: a closure is named after this function, and entering it would
    // toggle the count off again.
    let mut accepted = 0;
    for _ in 0..ROUNDS {
        if verify(black_box(&req), black_box(b"{}"), NOW, secret_of).is_ok() {
            accepted += 1;
        }
    }
    accepted
}

fn secret_of(key: &str) -> Option<&'static [u8]> {
    (key == "app-key").then_some(b"app-secret".as_slice())
}

/// The control: a comparison that stops at the first differing byte, on the same inputs.
#[inline(never)]
fn leaky_compare_many(wrong: &[u8], right: &[u8]) -> usize {
    let mut equal = 0;
    for _ in 0..ROUNDS {
        let (a, b) = (black_box(wrong), black_box(right));
        let mut same = a.len() == b.len();
        let mut i = 0;
        while same && i < a.len() {
            same = a[i] == b[i];
            i += 1;
        }
        if same {
            equal += 1;
        }
    }
    equal
}

fn signature_of(headers: &[(String, String)]) -> String {
    let auth = &headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .expect("an Authorization header")
        .1;
    auth[auth.find("Signature=").expect("a signature") + "Signature=".len()..].to_owned()
}

/// In the child: run one case.
fn run_case(case: &str) {
    let at = match case {
        "verify-first" | "leaky-first" => 0,
        _ => 63,
    };
    let headers = headers_wrong_at(Some(at));
    if case.starts_with("verify") {
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        // Once outside the measured function, so allocator caches are warm for both cases.
        let req = RequestView {
            method: "POST",
            path: "/orders/",
            query: Some("b=2&a=1"),
            headers: &pairs,
        };
        assert!(verify(&req, b"{}", NOW, secret_of).is_err());
        assert_eq!(verify_many(&pairs), 0);
    } else {
        let right = signature_of(&headers_wrong_at(None));
        let wrong = signature_of(&headers);
        assert_eq!(leaky_compare_many(wrong.as_bytes(), right.as_bytes()), 0);
    }
}

/// Instructions counted inside `function` when this test binary runs `case`.
fn instructions(case: &str, function: &str) -> u64 {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("callgrind.{}.{case}.out", std::process::id()));
    let exe = std::env::current_exe().expect("the test binary");
    let run = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(format!("--toggle-collect=*{function}*"))
        .arg(&exe)
        .args([
            "a_wrong_signature_costs_the_same_wherever_it_differs",
            "--exact",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD, case)
        .output()
        .expect("valgrind runs (apt-get install valgrind)");
    assert!(
        run.status.success(),
        "{case} under callgrind failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(&out).expect("callgrind's output file");
    let _ = std::fs::remove_file(&out);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("a totals line")
}

#[test]
fn a_wrong_signature_costs_the_same_wherever_it_differs() {
    if let Ok(case) = std::env::var(CHILD) {
        run_case(&case);
        return;
    }
    let leaky_first = instructions("leaky-first", "leaky_compare_many");
    let leaky_last = instructions("leaky-last_", "leaky_compare_many");
    println!("control, early-exit compare: first digit wrong {leaky_first}, last {leaky_last}");
    assert_ne!(
        leaky_first, leaky_last,
        "the measurement cannot see an early-exit comparison, so it proves nothing"
    );

    let first = instructions("verify-first", "verify_many");
    let last = instructions("verify-last_", "verify_many");
    println!("verify: first digit wrong {first} instructions, last {last}");
    assert!(
        first > 1_000 * ROUNDS as u64,
        "callgrind counted almost nothing ({first}): is verify_many inlined?"
    );
    assert_eq!(
        first, last,
        "verifying a wrong signature costs differently depending on where it is wrong"
    );
}
