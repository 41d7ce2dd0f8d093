//! The sealed path's parsers as the proxy, the worker and the client meet them: any bytes as an
//! envelope (`read_header`; `open_request` as a fixed worker with a fixed HPKE key, so the
//! committed envelope seed opens and its mutations reach every check), as a worker-signed
//! statement, as a receipt, and as the first answer piece of a fixed request. Nothing panics;
//! what opens agrees with the header and answers; what parses re-encodes to the same bytes; and
//! the bytes themselves, sealed as a request, open to the same bytes.
#![no_main]

use cocoon_sealed::{
    open_request, read_header, seal_request_with_rng, Padding, Receipt, Recipient, SealingKeyPair,
    WorkerSigned,
};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

/// The worker's RA-TLS key (made up) and HPKE secret of the seeds in corpus/sealed_parse.
const WORKER_KEY: [u8; 32] = [0x11; 32];
const SEALING_SECRET: [u8; 32] = [0x22; 32];
/// The seed of the RNG that sealed the request whose first answer piece is a seed.
const REQUEST_RNG_SEED: u64 = 7;

fuzz_target!(|data: &[u8]| {
    let keys = SealingKeyPair::from_secret(SEALING_SECRET);
    let recipient = Recipient {
        worker_key: WORKER_KEY,
        sealing_key: keys.public(),
    };

    // As an envelope.
    let header = read_header(data);
    if let Ok((_, opened_header, mut sealer)) = open_request(data, &WORKER_KEY, &[&keys]) {
        assert_eq!(
            header.as_ref(),
            Ok(&opened_header),
            "what opens parses the same"
        );
        assert!(opened_header.recipients.contains(&WORKER_KEY));
        sealer
            .seal_piece(b"answer", true)
            .expect("an opened request can be answered");
    }

    // As receipts.
    if let Ok(w) = WorkerSigned::from_bytes(data) {
        assert_eq!(w.to_bytes(), data);
    }
    if let Ok(r) = Receipt::from_bytes(data) {
        assert_eq!(r.to_bytes(), data);
        assert_eq!(Receipt::from_json(&r.to_json()), Ok(r));
    }

    // As the first answer piece of a fixed request.
    let mut rng = rand::rngs::StdRng::seed_from_u64(REQUEST_RNG_SEED);
    let (_, mut opener) = seal_request_with_rng(b"fuzz", 1, &[recipient], Padding::None, &mut rng)
        .expect("sealing to a valid key works");
    if let Ok(piece) = opener.open_piece(data) {
        assert_eq!(opener.pieces(), 1);
        assert_eq!(opener.finished(), piece.last);
    } else {
        assert_eq!(opener.pieces(), 0, "a refused piece changes nothing");
    }

    // As a request plaintext.
    if data.len() <= 64 * 1024 {
        let (envelope, _) =
            seal_request_with_rng(data, 9, &[recipient], Padding::Buckets, &mut rng)
                .expect("small plaintexts seal");
        let (plaintext, _, _) =
            open_request(&envelope, &WORKER_KEY, &[&keys]).expect("and open again");
        assert_eq!(plaintext, data);
    }
});
