//! The gateway's configuration values: backend specs, trusted proxy ranges and hash keys
//! parse or fail with a message, never a panic.
#![no_main]

use basis_gateway::backend::BackendSpec;
use basis_gateway::config::HashKey;
use basis_gateway::forwarded::Cidr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = text.parse::<BackendSpec>();
    let _ = text.parse::<Cidr>();
    let _ = text.parse::<HashKey>();
});
