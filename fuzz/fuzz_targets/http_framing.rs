//! The HTTP/1.1 framing walk that finds smuggling attempts: any bytes, cut anywhere,
//! give the same verdict as the same bytes in one piece.
#![no_main]

use basis_server::http::framing::Framing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let mut whole = Framing::new(8 * 1024);
    whole.feed(bytes);
    let mut pieces = Framing::new(8 * 1024);
    let step = usize::from(cut).max(1);
    for chunk in bytes.chunks(step) {
        pieces.feed(chunk);
    }
    assert_eq!(whole.conflict(), pieces.conflict());
    assert_eq!(whole.done(), pieces.done());
});
