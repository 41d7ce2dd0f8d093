//! TON BOC parsing the way the local chain does it for `sendBoc`: the byte-limited decode
//! (`MAX_EXTERNAL_BOC`; `decode_message` with `MAX_BOC_BYTES` for `sendBocReturnHash`), then the
//! ledger's `execute_external` on an empty chain (message parse, destination check, rejection),
//! plus the base64 form the HTTP API fields carry and the transaction-cell reading of
//! `wire::tx_outcome`. Never panics; whatever decodes re-encodes to a BOC of the same tree.
#![no_main]

use std::cell::RefCell;

use cocoon_localnet::ledger::Ledger;
use cocoon_localnet::node::{decode_message, MAX_EXTERNAL_BOC};
use cocoon_ton::cells::{decode_boc, decode_boc_base64, encode_boc, MAX_BOC_BYTES};
use libfuzzer_sys::fuzz_target;

thread_local! {
    // One empty chain for the whole run: an external message to an account that does not exist
    // is rejected without changing state, so inputs stay independent. Building the ledger parses
    // the 115 KiB config BOC, too slow to repeat per input.
    static LEDGER: RefCell<Option<Ledger>> =
        RefCell::new(Ledger::with_default_config(1_700_000_000).ok());
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cell) = decode_boc(data, MAX_EXTERNAL_BOC) {
        let again = encode_boc(&cell);
        let back = decode_boc(&again, usize::MAX).expect("a re-encoded BOC must decode");
        assert_eq!(
            back.repr_hash(),
            cell.repr_hash(),
            "BOC round trip changed the tree"
        );
        let _ = cocoon_ton::wire::tx_outcome(&cell);
        LEDGER.with(|l| {
            if let Some(ledger) = l.borrow_mut().as_mut() {
                let _ = ledger.execute_external(cell, 1_700_000_000);
            }
        });
    }
    let _ = decode_message(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decode_boc_base64(text, MAX_BOC_BYTES);
    }
});
