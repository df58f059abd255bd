//! The ledger's transfer and post bodies: any bytes are a transfer request or a 4xx
//! naming what is wrong, never a panic or a 5xx; amounts are whole positive minor units.
//! The property is [`basis_fuzz_checks::ledger_bodies`], which CI also runs in a short form.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| basis_fuzz_checks::ledger_bodies(data));
