//! Page cursors come back from clients: any text is a cursor or a 400, never a panic.
#![no_main]

use basis_server::error::ApiError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for sort in ["-created", "created", "-clicks", "clicks"] {
        match basis_server::links::list::after_of(Some(text), sort) {
            Ok(_) | Err(ApiError::Invalid(_)) => {}
            Err(other) => panic!("a link cursor failed with {other:?}"),
        }
    }
    match basis_server::blog::posts::list::check_cursor(text) {
        Ok(()) | Err(ApiError::Invalid(_)) => {}
        Err(other) => panic!("a post cursor failed with {other:?}"),
    }
    let _ = basis_server::http::rest::id_cursor(Some(text), 0);
});
