//! Rate-limit rule files (TOML), path patterns and client addresses: an error with a
//! line number, never a panic.
//! The property is [`basis_fuzz_checks::rate_limit_rules`], which CI also runs in a short form.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| basis_fuzz_checks::rate_limit_rules(data));
