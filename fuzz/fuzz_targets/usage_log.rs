//! The ledger's usage log as the proxy reads it at open (and the inspector): a file on the
//! host's disk, so any bytes. Record framing, signature checks and the record body parser
//! never panic, and a body that parses re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cocoon_ledger::fuzzing::usage_log(data);
});
