//! Avatar uploads: the type is sniffed from the first bytes and the image decoded within
//! its size limits; anything else is refused, never a panic or an unbounded allocation.
//! The property is [`basis_fuzz_checks::image_headers`], which CI also runs in a short form.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| basis_fuzz_checks::image_headers(data));
