//! RA-TLS certificate inspection over arbitrary DER: never panics, never accepts garbage.
#![no_main]

use cocoon_attest::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let policy = Policy::any();
    let _ = cocoon_ratls::inspect_cert(data, &policy, std::time::SystemTime::now());
});
