//! What must hold for every parser of untrusted input, written once as plain functions of
//! the input bytes.
//!
//! Two drivers feed them. The libFuzzer targets in `fuzz/` (one line each) explore for as
//! long as they are given (`scripts/fuzz`); the test in `tests/seeds.rs` runs in every CI:
//! it replays each target's committed seeds and saved crash inputs, then a few thousand
//! inputs mutated from them by a seeded generator. A check signals a failure by panicking,
//! as libFuzzer expects.

use std::collections::HashSet;

use basis_server::error::ApiError;

/// A check: panics when its property does not hold for the input.
pub type Check = fn(&[u8]);

/// Every check, by the name of its fuzz target (and of its directory under `fuzz/corpus`).
pub const TARGETS: &[(&str, Check)] = &[
    ("credentials", credentials),
    ("cursors", cursors),
    ("gateway_config", gateway_config),
    ("http_framing", http_framing),
    ("image_headers", image_headers),
    ("ledger_bodies", ledger_bodies),
    ("links_input", links_input),
    ("merge_patch", merge_patch),
    ("rate_limit_rules", rate_limit_rules),
];

/// Bearer credentials: JWTs of any shape are refused (only ours, unexpired, verify), and
/// roles and API-key scopes parse or fail cleanly.
pub fn credentials(data: &[u8]) {
    use basis_auth::jwt::KeySet;
    use basis_auth::role::{Role, Scope};
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
}

/// Page cursors come back from clients: any text is a cursor or a 400, never a panic.
pub fn cursors(data: &[u8]) {
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
}

/// The gateway's configuration values: backend specs, trusted proxy ranges and hash keys
/// parse or fail with a message, never a panic.
pub fn gateway_config(data: &[u8]) {
    use basis_gateway::backend::BackendSpec;
    use basis_gateway::config::HashKey;
    use basis_gateway::forwarded::Cidr;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = text.parse::<BackendSpec>();
    let _ = text.parse::<Cidr>();
    let _ = text.parse::<HashKey>();
}

/// The HTTP/1.1 framing walk that finds smuggling attempts: any bytes, cut anywhere, give
/// the same verdict as the same bytes in one piece. The first byte chooses the cut.
pub fn http_framing(data: &[u8]) {
    use basis_server::http::framing::Framing;
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
    assert_eq!(
        whole.conflict(),
        pieces.conflict(),
        "cut every {step} bytes"
    );
    assert_eq!(whole.done(), pieces.done(), "cut every {step} bytes");
}

/// Avatar uploads: the type is sniffed from the first bytes and the image decoded within
/// its size limits; anything else is refused, never a panic or an unbounded allocation.
pub fn image_headers(data: &[u8]) {
    use basis_server::accounts::avatar::{MAX_SIDE, decode, sniff};
    if sniff(data).is_err() {
        assert!(decode(data).is_err(), "an unsniffed upload decoded");
        return;
    }
    if let Ok(image) = decode(data) {
        assert!(image.width() <= MAX_SIDE && image.height() <= MAX_SIDE);
    }
}

/// The ledger's transfer and post bodies: any bytes are a transfer request or a 4xx
/// naming what is wrong, never a panic or a 5xx; amounts are whole positive minor units.
pub fn ledger_bodies(data: &[u8]) {
    use basis_server::http::rest::{from_document, parse_json};
    use basis_server::ledger::service::amount;
    use basis_server::ledger::transfers::{PostBody, TransferBody};
    fn client_error(err: &ApiError) -> bool {
        matches!(
            err,
            ApiError::Invalid(_)
                | ApiError::BadRequest(_)
                | ApiError::Unprocessable(_)
                | ApiError::UnprocessableFields(_)
        )
    }
    let document = match parse_json(data) {
        Ok(document) => document,
        Err(err) => {
            assert!(client_error(&err), "{err:?}");
            return;
        }
    };
    match from_document::<TransferBody>(document.clone()) {
        Ok(body) => {
            if let Ok(minor) = amount("amount", &body.amount) {
                assert!(minor >= 1, "an amount of {minor} minor units was taken");
            }
        }
        Err(err) => assert!(client_error(&err), "{err:?}"),
    }
    if let Err(err) = from_document::<PostBody>(document) {
        assert!(client_error(&err), "{err:?}");
    }
}

/// Long URLs, custom aliases and short codes: whatever a client sends is refused or
/// accepted without a panic, and what is accepted is stable.
pub fn links_input(data: &[u8]) {
    use basis_server::links::code::{
        CodeBook, ShortCode, base62_decode, base62_encode, is_code_shaped,
    };
    use basis_server::links::input::{Alias, UrlPolicy};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = UrlPolicy {
        max_len: 2048,
        own_origin: url::Url::parse("https://basis.test/").expect("a URL"),
        blocked_hosts: HashSet::from(["blocked.example".to_owned()]),
    };
    if let Ok(url) = policy.parse(text) {
        // What was accepted is accepted again, unchanged.
        let again = policy
            .parse(url.as_str())
            .expect("an accepted URL re-parses");
        assert_eq!(again.as_str(), url.as_str());
    }
    if let Ok(alias) = Alias::parse(text) {
        assert!(
            Alias::parse(alias.as_str()).is_ok(),
            "an accepted alias re-parses"
        );
    }
    let book = CodeBook::new(0x5eed_cafe_f00d);
    if let Some(id) = book.decode(text) {
        // A code names one id, and that id's code decodes to it.
        assert_eq!(book.decode(&book.encode(id)), Some(id));
    }
    if let Some(n) = base62_decode(text) {
        assert_eq!(base62_decode(&base62_encode(n)), Some(n));
    }
    let _ = is_code_shaped(text);
    let _ = ShortCode::parse(text).map(|c| c.as_str().len());
}

/// JSON Merge Patch (RFC 7396) documents: parsed without a panic, and applying a patch
/// twice gives what applying it once gave.
pub fn merge_patch(data: &[u8]) {
    use basis_server::http::rest::{merge_patch, parse_json};
    let Ok(patch) = parse_json(data) else {
        return;
    };
    let mut once =
        serde_json::json!({"title": "t", "tags": ["a"], "meta": {"x": 1, "y": {"z": null}}});
    merge_patch(&mut once, &patch);
    let mut twice = once.clone();
    merge_patch(&mut twice, &patch);
    assert_eq!(once, twice, "a merge patch is idempotent");
}

/// Rate-limit rule files (TOML), path patterns and client addresses: an error with a line
/// number, never a panic.
pub fn rate_limit_rules(data: &[u8]) {
    use basis_ratelimit::RateLimitConfig;
    use basis_ratelimit::http::{IpNet, PathPattern};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = RateLimitConfig::parse(text);
    let _ = PathPattern::parse(text);
    let _ = IpNet::parse(text);
}
