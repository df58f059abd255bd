//! Avatar uploads: the type is sniffed from the first bytes and the image decoded within
//! its size limits; anything else is refused, never a panic or an unbounded allocation.
#![no_main]

use basis_server::accounts::avatar::{MAX_SIDE, decode, sniff};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if sniff(data).is_err() {
        assert!(decode(data).is_err());
        return;
    }
    if let Ok(image) = decode(data) {
        assert!(image.width() <= MAX_SIDE && image.height() <= MAX_SIDE);
    }
});
