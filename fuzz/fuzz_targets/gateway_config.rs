//! The gateway's configuration values: backend specs, trusted proxy ranges and hash keys
//! parse or fail with a message, never a panic.
//! The property is [`basis_fuzz_checks::gateway_config`], which CI also runs in a short form.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| basis_fuzz_checks::gateway_config(data));
