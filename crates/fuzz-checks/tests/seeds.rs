//! The short form of fuzzing, run by every CI: each target's committed seeds and saved
//! crash inputs, then inputs mutated from them by a seeded generator (`FUZZ_SHORT_RUNS`
//! per target, default 20,000; the same seed gives the same inputs). A failing input is
//! saved under `fuzz/artifacts/<target>/`, where `cargo fuzz run` and this test replay it.
//! The long, coverage-guided form is `scripts/fuzz SECONDS`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use basis_fuzz_checks::{Check, TARGETS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Inputs grow no larger than libFuzzer is allowed to make them in `scripts/fuzz`.
const MAX_LEN: usize = 65_536;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `dir`, sorted by name (none when it does not exist).
fn files_in(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(PathBuf, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).expect("a readable seed");
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

fn check_for(name: &str) -> Check {
    TARGETS
        .iter()
        .find(|(target, _)| *target == name)
        .map(|(_, check)| *check)
        .unwrap_or_else(|| panic!("no check named {name}"))
}

/// Runs `check` on `input`; on a panic, saves the input and fails naming the file.
fn run(target: &str, check: Check, input: &[u8], origin: &str) {
    if catch_unwind(AssertUnwindSafe(|| check(input))).is_ok() {
        return;
    }
    let dir = fuzz_dir().join("artifacts").join(target);
    std::fs::create_dir_all(&dir).expect("the artifacts directory");
    let digest = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let path = dir.join(format!("short-{digest:016x}"));
    std::fs::write(&path, input).expect("the failing input saved");
    panic!(
        "{target} failed on {origin}; the input is saved in {} ({} bytes: {:?})",
        path.display(),
        input.len(),
        String::from_utf8_lossy(&input[..input.len().min(200)])
    );
}

/// One random edit of `input`, drawing material from `seeds`.
fn mutate(rng: &mut StdRng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    const INTERESTING: &[u8] = b"\0\xff\r\n:;,\"{}[]0-9 \t%\\/.@=";
    let len = input.len();
    match rng.random_range(0..7) {
        0 if len > 0 => {
            let at = rng.random_range(0..len);
            input[at] ^= 1 << rng.random_range(0..8);
        }
        1 if len > 0 => {
            let at = rng.random_range(0..len);
            input[at] = INTERESTING[rng.random_range(0..INTERESTING.len())];
        }
        2 => {
            let at = rng.random_range(0..=len);
            let n = rng.random_range(1..=8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            input.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let from = rng.random_range(0..len);
            let to = rng.random_range(from..=len.min(from + 64));
            input.drain(from..to);
        }
        4 if len > 0 => {
            // Repeat a piece in place: long headers, nested documents, runs of digits.
            let from = rng.random_range(0..len);
            let to = rng.random_range(from..=len.min(from + 32));
            let piece = input[from..to].to_vec();
            for _ in 0..rng.random_range(1..=16) {
                input.splice(to..to, piece.iter().copied());
            }
        }
        5 if !seeds.is_empty() => {
            // Splice: this input's head with another seed's tail.
            let other = &seeds[rng.random_range(0..seeds.len())];
            let cut = rng.random_range(0..=len);
            let from = rng.random_range(0..=other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        _ if !seeds.is_empty() => {
            // Insert a piece of another seed (its tokens, in effect).
            let other = &seeds[rng.random_range(0..seeds.len())];
            let from = rng.random_range(0..=other.len());
            let to = rng.random_range(from..=other.len().min(from + 24));
            let at = rng.random_range(0..=len);
            input.splice(at..at, other[from..to].iter().copied());
        }
        _ => input.push(rng.random()),
    }
    input.truncate(MAX_LEN);
}

fn short_run(target: &str) {
    let check = check_for(target);
    let seeds = files_in(&fuzz_dir().join("corpus").join(target));
    assert!(!seeds.is_empty(), "{target} has no committed seeds");
    for (path, bytes) in seeds
        .iter()
        .chain(&files_in(&fuzz_dir().join("artifacts").join(target)))
    {
        run(target, check, bytes, &path.display().to_string());
    }
    let seeds: Vec<Vec<u8>> = seeds.into_iter().map(|(_, bytes)| bytes).collect();
    let runs: u64 = std::env::var("FUZZ_SHORT_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let mut rng = StdRng::seed_from_u64(0xba515);
    for i in 0..runs {
        let mut input = seeds[rng.random_range(0..seeds.len())].clone();
        for _ in 0..rng.random_range(1..=4) {
            mutate(&mut rng, &mut input, &seeds);
        }
        run(target, check, &input, &format!("mutated input {i}"));
    }
}

macro_rules! short_runs {
    ($($target:ident),* $(,)?) => {
        $(#[test]
        fn $target() {
            short_run(stringify!($target));
        })*

        /// Every fuzz target and every seed directory has its short run here.
        #[test]
        fn every_fuzz_target_has_a_short_run() {
            let here = [$(stringify!($target)),*];
            let mut listed: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
            listed.sort_unstable();
            assert_eq!(listed, here, "TARGETS and the short runs name the same checks");
            for dir in ["fuzz_targets", "corpus"] {
                let mut found: Vec<String> = std::fs::read_dir(fuzz_dir().join(dir))
                    .expect("the fuzz directory")
                    .filter_map(Result::ok)
                    .map(|e| e.path().file_stem().unwrap().to_string_lossy().into_owned())
                    .collect();
                found.sort_unstable();
                assert_eq!(found, here, "fuzz/{dir} holds exactly the checked targets");
            }
        }
    };
}

short_runs!(
    credentials,
    cursors,
    gateway_config,
    http_framing,
    image_headers,
    ledger_bodies,
    links_input,
    merge_patch,
    rate_limit_rules,
);
