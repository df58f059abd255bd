//! Page cursors come back from clients: any text is a cursor or a 400, never a panic.
//! The property is [`basis_fuzz_checks::cursors`], which CI also runs in a short form.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| basis_fuzz_checks::cursors(data));
