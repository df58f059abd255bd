//! The HTTP/1.1 framing walk that finds smuggling attempts: any bytes, cut anywhere,
//! give the same verdict as the same bytes in one piece.
//! The property is [`basis_fuzz_checks::http_framing`], which CI also runs in a short form.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| basis_fuzz_checks::http_framing(data));
