//! Long URLs, custom aliases and short codes: whatever a client sends is refused or
//! accepted without a panic, and what is accepted is stable.
//! The property is [`basis_fuzz_checks::links_input`], which CI also runs in a short form.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| basis_fuzz_checks::links_input(data));
