//! Long URLs, custom aliases and short codes: whatever a client sends is refused or
//! accepted without a panic, and what is accepted is stable.
#![no_main]

use std::collections::HashSet;

use basis_server::links::code::{
    CodeBook, ShortCode, base62_decode, base62_encode, is_code_shaped,
};
use basis_server::links::input::{Alias, UrlPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
        assert!(Alias::parse(alias.as_str()).is_ok());
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
});
