//! The ledger's transfer and post bodies: any bytes are a transfer request or a 4xx
//! naming what is wrong, never a panic or a 5xx; amounts are whole positive minor units.
#![no_main]

use basis_server::error::ApiError;
use basis_server::http::rest::{from_document, parse_json};
use basis_server::ledger::service::amount;
use basis_server::ledger::transfers::{PostBody, TransferBody};
use libfuzzer_sys::fuzz_target;

fn client_error(err: &ApiError) -> bool {
    matches!(
        err,
        ApiError::Invalid(_)
            | ApiError::BadRequest(_)
            | ApiError::Unprocessable(_)
            | ApiError::UnprocessableFields(_)
    )
}

fuzz_target!(|data: &[u8]| {
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
                assert!(minor >= 1);
            }
        }
        Err(err) => assert!(client_error(&err), "{err:?}"),
    }
    if let Err(err) = from_document::<PostBody>(document) {
        assert!(client_error(&err), "{err:?}");
    }
});
