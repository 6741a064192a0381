//! Replays every seed of `fuzz/corpus/<target>/` through its target, then deterministic
//! mutations of the seeds (bit flips, byte edits, splices), so the normal test run keeps what
//! fuzzing found and explores a little around it. Long runs: see `fuzz/README.md`.

use std::path::PathBuf;

/// Mutations per target; about a second in a debug build.
const MUTATIONS: usize = 20_000;

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let bytes = std::fs::read(&path).expect("corpus file");
            (path.display().to_string(), bytes)
        })
        .collect();
    seeds.sort();
    seeds
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the parsers under test, to insert more often than noise.
const INTERESTING: &[&[u8]] = &[
    b"/",
    b"%",
    b"%2e",
    b"%2F",
    b"%00",
    b"..",
    b"{",
    b"}",
    b"+}",
    b"\n",
    b":",
    b",",
    b"=",
    b"?",
    b"&",
    b"#",
    b"\\",
    b"\xff",
    b"\xc0\xae",
    b"SignedHeaders=",
    b"Signature=",
    b"&a ",
    b"*a",
    b"\n  - ",
    b"x-apigateway-",
    b"{name+}",
];

fn mutate(rng: &mut Rng, seeds: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].1.clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if !data.is_empty() => {
                let i = at.min(data.len() - 1);
                data[i] ^= 1 << rng.below(8);
            }
            1 if at < data.len() => {
                let end = (at + 1 + rng.below(8)).min(data.len());
                data.drain(at..end);
            }
            2 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(at..at, piece.iter().copied());
            }
            3 => {
                let other = &seeds[rng.below(seeds.len())].1;
                let from = rng.below(other.len());
                let len = rng.below(other.len() - from + 1);
                data.splice(at..at, other[from..from + len].iter().copied());
            }
            _ => data.insert(at.min(data.len()), rng.next() as u8),
        }
    }
    data
}

#[test]
fn every_target_survives_its_corpus_and_mutations() {
    for (name, target) in apig_fuzz::TARGETS {
        let seeds = corpus(name);
        assert!(!seeds.is_empty(), "{name}: no seeds");
        for (file, bytes) in &seeds {
            let replay = std::panic::catch_unwind(|| target(bytes));
            assert!(replay.is_ok(), "{name}: seed {file} fails");
        }
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ name.len() as u64);
        for round in 0..MUTATIONS {
            let data = mutate(&mut rng, &seeds);
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(
                result.is_ok(),
                "{name}: mutation {round} fails; input (escaped): {}",
                data.escape_ascii()
            );
        }
    }
}
