//! Bearer credentials: JWTs of any shape are refused (only ours, unexpired, verify), and
//! roles and API-key scopes parse or fail cleanly.
#![no_main]

use basis_auth::jwt::KeySet;
use basis_auth::role::{Role, Scope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let keys = KeySet::parse(
        "k1:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMjM0",
        "https://basis.test",
        "basis-api",
    )
    .expect("a key set");
    // A forged token never verifies: the key is not in the input.
    assert!(
        keys.verify(text, 1_700_000_000).is_err(),
        "a forged token verified"
    );
    let _ = text.parse::<Role>();
    let _ = text.parse::<Scope>();
    let _ = KeySet::parse(text, "https://basis.test", "basis-api");
    let _ = basis_auth::secret::digest(text);
});
