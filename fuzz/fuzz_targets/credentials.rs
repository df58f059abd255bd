//! Bearer credentials: JWTs of any shape are refused (only ours, unexpired, verify), and
//! roles and API-key scopes parse or fail cleanly.
//! The property is [`basis_fuzz_checks::credentials`], which CI also runs in a short form.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| basis_fuzz_checks::credentials(data));
