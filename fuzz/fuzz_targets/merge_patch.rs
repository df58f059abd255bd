//! JSON Merge Patch (RFC 7396) documents: parsed without a panic, and applying a patch
//! twice gives what applying it once gave.
//! The property is [`basis_fuzz_checks::merge_patch`], which CI also runs in a short form.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| basis_fuzz_checks::merge_patch(data));
