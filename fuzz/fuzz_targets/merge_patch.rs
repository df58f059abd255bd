//! JSON Merge Patch (RFC 7396) documents: parsed without a panic, and applying a patch
//! twice gives what applying it once gave.
#![no_main]

use basis_server::http::rest::{merge_patch, parse_json};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(patch) = parse_json(data) else {
        return;
    };
    let mut once = json!({"title": "t", "tags": ["a"], "meta": {"x": 1, "y": {"z": null}}});
    merge_patch(&mut once, &patch);
    let mut twice = once.clone();
    merge_patch(&mut twice, &patch);
    assert_eq!(once, twice, "a merge patch is idempotent");
});
