//! The cleartext PoW messages (the first bytes any stranger can send).
#![no_main]

use cocoon_proto::pow;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = <[u8; pow::CHALLENGE_LEN]>::try_from(data) {
        if let Ok((difficulty, salt)) = pow::decode_challenge(&msg) {
            assert_eq!(pow::encode_challenge(difficulty, &salt), msg);
        }
    }
    if let Ok(msg) = <[u8; pow::RESPONSE_LEN]>::try_from(data) {
        if let Ok(nonce) = pow::decode_response(&msg) {
            let _ = pow::check(&[0; 16], 8, nonce);
        }
    }
});
