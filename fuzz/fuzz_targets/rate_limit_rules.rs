//! Rate-limit rule files (TOML), path patterns and client addresses: an error with a
//! line number, never a panic.
#![no_main]

use basis_ratelimit::RateLimitConfig;
use basis_ratelimit::http::{IpNet, PathPattern};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = RateLimitConfig::parse(text);
    let _ = PathPattern::parse(text);
    let _ = IpNet::parse(text);
});
