//! Times the sealed path's per-request cryptography (seal to 3 recipients, open, one answer
//! piece each way): `cargo run --release -p cocoon-sealed --example seal_timing`.

use std::time::Instant;

use cocoon_sealed::{open_request, seal_request, Padding, Recipient, SealingKeyPair};

fn main() {
    let pairs: Vec<SealingKeyPair> = (0..3).map(|_| SealingKeyPair::generate()).collect();
    let recipients: Vec<Recipient> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| Recipient {
            worker_key: [i as u8 + 1; 32],
            sealing_key: p.public(),
        })
        .collect();
    let body = vec![b'x'; 600];
    let n = 2000u32;
    let t = Instant::now();
    let mut envelopes = Vec::new();
    for _ in 0..n {
        envelopes.push(seal_request(&body, 100, &recipients, Padding::None).expect("seal"));
    }
    let seal = t.elapsed() / n;
    let t = Instant::now();
    for (e, _) in &envelopes {
        let (_, _, mut s) = open_request(e, &[1; 32], &[&pairs[0]]).expect("open");
        s.seal_piece(b"answer", true).expect("piece");
    }
    let open = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        let _ = SealingKeyPair::from_secret([7; 32]).public();
    }
    let from_secret = t.elapsed() / n;
    println!(
        "seal to 3: {seal:?}, open + 1 piece: {open:?}, key pair from secret: {from_secret:?}"
    );
}
