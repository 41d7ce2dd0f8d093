use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::answer::STREAM_NONCE_LEN;
use crate::padding::PIECE_MIN_BUCKET;

/// A candidate worker: its (made-up) RA-TLS key and its HPKE key pair.
struct Worker {
    key: [u8; 32],
    sealing: SealingKeyPair,
}

impl Worker {
    fn recipient(&self) -> Recipient {
        Recipient {
            worker_key: self.key,
            sealing_key: self.sealing.public(),
        }
    }
}

fn workers(n: usize, seed: u64) -> Vec<Worker> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| Worker {
            key: [i as u8 + 1; 32],
            sealing: SealingKeyPair::generate_with_rng(&mut rng),
        })
        .collect()
}

fn recipients(ws: &[Worker]) -> Vec<Recipient> {
    ws.iter().map(Worker::recipient).collect()
}

fn seal_det(plaintext: &[u8], ws: &[Worker], padding: Padding) -> (Vec<u8>, AnswerOpener) {
    let mut rng = StdRng::seed_from_u64(99);
    seal_request_with_rng(plaintext, 500, &recipients(ws), padding, &mut rng).unwrap()
}

fn open_as(
    envelope: &[u8],
    w: &Worker,
) -> Result<(Vec<u8>, RequestHeader, AnswerSealer), SealError> {
    open_request(envelope, &w.key, &[&w.sealing])
}

const REQUEST: &[u8] = b"tl-serialized http.request bytes: POST /v1/chat/completions";

// === envelope round trips ===

#[test]
fn round_trip_1_3_8_recipients_with_and_without_padding() {
    for n in [1usize, 3, 8] {
        for padding in [Padding::None, Padding::Buckets] {
            let ws = workers(n, n as u64);
            for (i, w) in ws.iter().enumerate() {
                // One envelope per answering worker: an opener follows one answer stream.
                let (envelope, mut opener) =
                    seal_request(REQUEST, 1234, &recipients(&ws), padding).unwrap();
                let header = read_header(&envelope).unwrap();
                assert_eq!(header.max_tokens, 1234);
                assert_eq!(
                    header.recipients,
                    ws.iter().map(|w| w.key).collect::<Vec<_>>()
                );
                assert_eq!(opener.request_hash(), envelope_hash(&envelope));

                let (plaintext, opened_header, mut sealer) = open_as(&envelope, w).unwrap();
                assert_eq!(plaintext, REQUEST, "n={n} i={i} {padding:?}");
                assert_eq!(opened_header, header);

                sealer.set_padding(padding);
                let chunks: [&[u8]; 4] = [b"Hel", b"lo, ", b"world", b""];
                for (j, chunk) in chunks.iter().enumerate() {
                    let last = j == chunks.len() - 1;
                    let piece = sealer.seal_piece(chunk, last).unwrap();
                    let opened = opener.open_piece(&piece).unwrap();
                    assert_eq!(opened.data, *chunk);
                    assert_eq!(opened.last, last);
                }
                assert!(opener.finished());
                assert!(sealer.finished());
                assert_eq!(sealer.pieces(), 4);
                assert_eq!(opener.pieces(), 4);
                assert_eq!(sealer.transcript_hash(), opener.transcript_hash());
                assert_ne!(sealer.transcript_hash(), [0; 32]);
            }
        }
    }
}

#[test]
fn padded_envelopes_and_pieces_have_bucket_sizes() {
    let ws = workers(3, 1);
    let header = header_len(3);
    for len in [0usize, 1, 100, 1020, 1021, 4000, 70_000] {
        let plaintext = vec![0xabu8; len];
        let (env, _) = seal_det(&plaintext, &ws, Padding::Buckets);
        let padded = env.len() - header - TAG_LEN;
        assert!(
            padded.is_power_of_two() && padded >= 1024,
            "len {len}: {padded}"
        );
        assert!(padded <= (2 * (len + 4)).max(1024));
        assert_eq!(open_as(&env, &ws[2]).unwrap().0, plaintext);

        let (env, _) = seal_det(&plaintext, &ws, Padding::None);
        assert_eq!(env.len(), header + 4 + len + TAG_LEN);
    }
    // Two plaintexts in one bucket seal to envelopes of one length.
    let a = seal_det(&[1u8; 10], &ws, Padding::Buckets).0;
    let b = seal_det(&[1u8; 900], &ws, Padding::Buckets).0;
    assert_eq!(a.len(), b.len());

    let (env, mut opener) = seal_det(b"q", &ws, Padding::Buckets);
    let (_, _, mut sealer) = open_as(&env, &ws[0]).unwrap();
    sealer.set_padding(Padding::Buckets);
    for (i, len) in [0usize, 60, 61, 500, 3].into_iter().enumerate() {
        let data = vec![7u8; len];
        let piece = sealer.seal_piece(&data, i == 4).unwrap();
        let head = 1 + if i == 0 { STREAM_NONCE_LEN } else { 0 };
        let padded = piece.len() - head - TAG_LEN;
        assert!(
            padded.is_power_of_two() && padded >= PIECE_MIN_BUCKET,
            "{len}: {padded}"
        );
        assert_eq!(opener.open_piece(&piece).unwrap().data, data);
    }
    assert!(opener.finished());
}

#[test]
fn deterministic_with_seeded_rng() {
    let ws = workers(2, 5);
    assert_eq!(
        seal_det(REQUEST, &ws, Padding::None).0,
        seal_det(REQUEST, &ws, Padding::None).0
    );
}

#[test]
fn worker_with_several_keys_uses_the_one_its_slot_names() {
    let ws = workers(2, 7);
    let (env, _) = seal_det(REQUEST, &ws, Padding::None);
    let old = SealingKeyPair::from_secret([9; 32]);
    let other = SealingKeyPair::from_secret([10; 32]);
    let (pt, _, _) = open_request(&env, &ws[1].key, &[&old, &ws[1].sealing, &other]).unwrap();
    assert_eq!(pt, REQUEST);
}

// === refusals ===

#[test]
fn not_a_recipient_and_wrong_key_pair_are_refused() {
    let ws = workers(3, 2);
    let (env, _) = seal_det(REQUEST, &ws, Padding::None);
    let outsider = workers(4, 3).pop().unwrap();
    assert_eq!(
        open_request(&env, &[0xee; 32], &[&outsider.sealing]).unwrap_err(),
        SealError::NotARecipient
    );
    // A recipient's identity with another worker's key pair.
    assert_eq!(
        open_request(&env, &ws[0].key, &[&ws[1].sealing, &outsider.sealing]).unwrap_err(),
        SealError::NoMatchingKey
    );
    assert_eq!(
        open_request(&env, &ws[0].key, &[]).unwrap_err(),
        SealError::NoMatchingKey
    );
}

#[test]
fn a_slot_naming_our_public_key_with_another_secret_does_not_open() {
    // A worker holding a key pair whose public half matches the slot is the only way in; a
    // forged slot naming the worker's public key but wrapped to another key fails to open.
    let ws = workers(1, 4);
    let (mut env, _) = seal_det(REQUEST, &ws, Padding::None);
    let other = SealingKeyPair::from_secret([3; 32]);
    env[PREFIX_LEN + 32..PREFIX_LEN + 64].copy_from_slice(&other.public());
    assert_eq!(
        open_request(&env, &ws[0].key, &[&other]).unwrap_err(),
        SealError::OpenFailed
    );
}

#[test]
fn flipping_any_byte_makes_opening_fail_for_every_recipient() {
    let ws = workers(2, 11);
    let (env, _) = seal_det(b"small", &ws, Padding::None);
    for w in &ws {
        assert!(open_as(&env, w).is_ok());
    }
    for pos in 0..env.len() {
        for mask in [0x01u8, 0x80] {
            let mut bad = env.clone();
            bad[pos] ^= mask;
            for (i, w) in ws.iter().enumerate() {
                assert!(
                    open_as(&bad, w).is_err(),
                    "byte {pos} ^ {mask:#x}, recipient {i}"
                );
            }
        }
    }
}

#[test]
fn changing_max_tokens_fails() {
    let ws = workers(3, 12);
    let (mut env, _) = seal_det(REQUEST, &ws, Padding::None);
    env[5..13].copy_from_slice(&1_000_000u64.to_be_bytes());
    assert_eq!(read_header(&env).unwrap().max_tokens, 1_000_000);
    for w in &ws {
        assert_eq!(open_as(&env, w).unwrap_err(), SealError::OpenFailed);
    }
}

#[test]
fn swapping_two_slots_fails() {
    let ws = workers(3, 13);
    let (env, _) = seal_det(REQUEST, &ws, Padding::None);
    let mut swapped = env.clone();
    let (a, b) = (PREFIX_LEN, PREFIX_LEN + SLOT_LEN);
    let slot_a = env[a..a + SLOT_LEN].to_vec();
    swapped.copy_within(b..b + SLOT_LEN, a);
    swapped[b..b + SLOT_LEN].copy_from_slice(&slot_a);
    assert_eq!(read_header(&swapped).unwrap().recipients[0], ws[1].key);
    for w in &ws {
        assert_eq!(open_as(&swapped, w).unwrap_err(), SealError::OpenFailed);
    }
}

#[test]
fn replacing_another_recipients_wrap_fails() {
    // Bytes the worker's own HPKE open does not cover (another slot's `wrapped`) are in the
    // body's AAD.
    let ws = workers(2, 14);
    let (mut env, _) = seal_det(REQUEST, &ws, Padding::None);
    let at = PREFIX_LEN + SLOT_LEN + SLOT_PUBLIC_LEN;
    env[at..at + WRAPPED_LEN].fill(0);
    assert_eq!(open_as(&env, &ws[0]).unwrap_err(), SealError::OpenFailed);
}

#[test]
fn proxy_without_content_key_reads_only_public_data() {
    let ws = workers(2, 15);
    let secret_request = b"SECRET-PROMPT-0123456789-SECRET-PROMPT";
    let (env, _) = seal_det(secret_request, &ws, Padding::Buckets);
    // The proxy learns the header ...
    let header = read_header(&env).unwrap();
    assert_eq!(header.recipients, vec![ws[0].key, ws[1].key]);
    // ... but no plaintext, and no recipient's secret, is in the envelope.
    assert!(!env.windows(8).any(|w| w == &secret_request[..8]));
    for w in &ws {
        assert!(!env.windows(32).any(|x| x == w.sealing.secret().as_slice()));
    }
    // With every public input and keys of its own, it cannot open.
    let proxy_keys = SealingKeyPair::from_secret([0x42; 32]);
    for w in &ws {
        assert!(open_request(&env, &w.key, &[&proxy_keys]).is_err());
    }
    // Nor can it seal a request of its own that a worker's opener-holder would accept: a fresh
    // envelope has a different request hash and content key.
    let (env2, _) = seal_request(secret_request, 500, &recipients(&ws), Padding::Buckets).unwrap();
    assert_ne!(envelope_hash(&env), envelope_hash(&env2));
}

#[test]
fn seal_refuses_bad_recipient_lists() {
    let ws = workers(9, 16);
    let rs = recipients(&ws);
    assert_eq!(
        seal_request(REQUEST, 1, &[], Padding::None).unwrap_err(),
        SealError::BadRecipientCount(0)
    );
    assert_eq!(
        seal_request(REQUEST, 1, &rs, Padding::None).unwrap_err(),
        SealError::BadRecipientCount(9)
    );
    assert!(seal_request(REQUEST, 1, &rs[..8], Padding::None).is_ok());
    let dup = [
        rs[0],
        Recipient {
            worker_key: rs[0].worker_key,
            sealing_key: rs[1].sealing_key,
        },
    ];
    assert_eq!(
        seal_request(REQUEST, 1, &dup, Padding::None).unwrap_err(),
        SealError::DuplicateRecipient
    );
    // A low-order X25519 point (here zero) gives an all-zero shared secret: refused.
    let low = [Recipient {
        worker_key: [1; 32],
        sealing_key: [0; 32],
    }];
    assert_eq!(
        seal_request(REQUEST, 1, &low, Padding::None).unwrap_err(),
        SealError::BadRecipientKey
    );
}

#[test]
fn seal_refuses_oversize_and_limit_is_exact() {
    let ws = workers(1, 17);
    let rs = recipients(&ws);
    let overhead = header_len(1) + LEN_PREFIX + TAG_LEN;
    let fits = vec![0u8; MAX_ENVELOPE_LEN - overhead];
    let (env, _) = seal_request(&fits, 1, &rs, Padding::None).unwrap();
    assert_eq!(env.len(), MAX_ENVELOPE_LEN);
    assert_eq!(open_as(&env, &ws[0]).unwrap().0.len(), fits.len());
    let too_big = vec![0u8; MAX_ENVELOPE_LEN - overhead + 1];
    assert!(matches!(
        seal_request(&too_big, 1, &rs, Padding::None),
        Err(SealError::TooLarge { .. })
    ));
    // With buckets the body rounds up to 16 MiB, which with the header no longer fits.
    assert!(matches!(
        seal_request(&fits, 1, &rs, Padding::Buckets),
        Err(SealError::TooLarge { .. })
    ));
    let mut huge = env;
    huge.push(0);
    assert!(matches!(
        read_header(&huge),
        Err(SealError::TooLarge { .. })
    ));
}

// === read_header ===

fn small_envelope(n: usize) -> Vec<u8> {
    seal_det(b"x", &workers(n, 20 + n as u64), Padding::None).0
}

#[test]
fn read_header_refuses_bad_counts_duplicates_and_framing() {
    let env = small_envelope(2);
    assert_eq!(read_header(&env).unwrap().recipients.len(), 2);

    let mut zero = env.clone();
    zero[COUNT_AT] = 0;
    assert_eq!(
        read_header(&zero).unwrap_err(),
        SealError::BadRecipientCount(0)
    );

    // 9 slots, well formed otherwise.
    let one = small_envelope(1);
    let mut nine = one[..PREFIX_LEN].to_vec();
    nine[COUNT_AT] = 9;
    for i in 0..9u8 {
        let mut slot = one[PREFIX_LEN..PREFIX_LEN + SLOT_LEN].to_vec();
        slot[0] = i;
        nine.extend_from_slice(&slot);
    }
    nine.extend_from_slice(&one[PREFIX_LEN + SLOT_LEN..]);
    assert_eq!(
        read_header(&nine).unwrap_err(),
        SealError::BadRecipientCount(9)
    );

    let mut dup = env.clone();
    dup.copy_within(PREFIX_LEN..PREFIX_LEN + 32, PREFIX_LEN + SLOT_LEN);
    assert_eq!(
        read_header(&dup).unwrap_err(),
        SealError::DuplicateRecipient
    );

    let mut trailing = env.clone();
    trailing.push(0);
    assert_eq!(
        read_header(&trailing).unwrap_err(),
        SealError::TrailingBytes
    );

    for cut in 0..env.len() {
        assert!(read_header(&env[..cut]).is_err(), "cut at {cut}");
    }
    assert_eq!(
        read_header(&env[..env.len() - 1]).unwrap_err(),
        SealError::Truncated
    );
    assert_eq!(read_header(&env[..3]).unwrap_err(), SealError::Truncated);

    let mut magic = env.clone();
    magic[0] = b'X';
    assert_eq!(read_header(&magic).unwrap_err(), SealError::BadMagic);
    assert_eq!(
        read_header(b"{\"model\":1}").unwrap_err(),
        SealError::BadMagic
    );

    let mut version = env.clone();
    version[4] = 2;
    assert_eq!(
        read_header(&version).unwrap_err(),
        SealError::UnsupportedVersion(2)
    );

    let mut short_body = env.clone();
    let at = header_len(2) - BODY_LEN_FIELD;
    short_body[at..at + 4].copy_from_slice(&19u32.to_be_bytes());
    assert_eq!(read_header(&short_body).unwrap_err(), SealError::BadLength);
}

#[test]
fn envelope_layout_offsets() {
    let ws = workers(2, 30);
    let (env, _) = seal_det(b"abc", &ws, Padding::None);
    assert_eq!(&env[..4], b"CSLD");
    assert_eq!(env[4], 1);
    assert_eq!(&env[5..13], &500u64.to_be_bytes());
    assert_eq!(env[13], 2);
    for (i, w) in ws.iter().enumerate() {
        let s = 14 + 144 * i;
        assert_eq!(&env[s..s + 32], &w.key);
        assert_eq!(&env[s + 32..s + 64], &w.sealing.public());
    }
    let body_len = u32::from_be_bytes(env[14 + 288..18 + 288].try_into().unwrap());
    assert_eq!(body_len as usize, 4 + 3 + 16);
    assert_eq!(env.len(), 18 + 288 + body_len as usize);
}

#[test]
fn types_are_send_and_debug_prints_no_keys() {
    fn assert_send<T: Send>() {}
    assert_send::<AnswerSealer>();
    assert_send::<AnswerOpener>();
    assert_send::<SealingKeyPair>();

    let ws = workers(1, 31);
    let (env, opener) = seal_det(b"abc", &ws, Padding::None);
    let (_, _, sealer) = open_as(&env, &ws[0]).unwrap();
    let s = format!("{sealer:?} {opener:?} {:?}", ws[0].sealing);
    assert!(!s.contains(&hex::encode(*ws[0].sealing.secret())));
    assert!(s.contains("AnswerSealer") && s.contains("AnswerOpener"));
}

// === answer stream ===

/// An opener and a sealer of one request, and `n` pieces (the last one flagged last).
fn stream(n: usize) -> (AnswerOpener, AnswerSealer, Vec<Vec<u8>>) {
    let ws = workers(1, 40);
    let (env, opener) = seal_det(REQUEST, &ws, Padding::None);
    let (_, _, mut sealer) = open_as(&env, &ws[0]).unwrap();
    let pieces = (0..n)
        .map(|i| {
            sealer
                .seal_piece(format!("piece {i}").as_bytes(), i == n - 1)
                .unwrap()
        })
        .collect();
    (opener, sealer, pieces)
}

#[test]
fn transcript_hash_is_the_documented_chain() {
    let (mut opener, sealer, pieces) = stream(3);
    let mut h = [0u8; 32];
    for p in &pieces {
        h = crypto::sha256(&[&h, p]);
        opener.open_piece(p).unwrap();
    }
    assert_eq!(sealer.transcript_hash(), h);
    assert_eq!(opener.transcript_hash(), h);
}

#[test]
fn reordered_pieces_are_refused_and_leave_the_opener_unchanged() {
    let (mut opener, _, p) = stream(3);
    opener.open_piece(&p[0]).unwrap();
    let before = opener.transcript_hash();
    assert_eq!(opener.open_piece(&p[2]).unwrap_err(), SealError::OpenFailed);
    assert_eq!(opener.transcript_hash(), before);
    assert_eq!(opener.pieces(), 1);
    opener.open_piece(&p[1]).unwrap();
    opener.open_piece(&p[2]).unwrap();
    assert!(opener.finished());

    let (mut opener, _, p) = stream(3);
    assert!(opener.open_piece(&p[1]).is_err(), "piece 1 first");
}

#[test]
fn dropped_duplicated_and_cut_streams_are_detected() {
    // Dropped: 0 then 2.
    let (mut opener, _, p) = stream(3);
    opener.open_piece(&p[0]).unwrap();
    assert!(opener.open_piece(&p[2]).is_err());
    // Duplicated: 0 then 0, 1 then 1.
    let (mut opener, _, p) = stream(3);
    opener.open_piece(&p[0]).unwrap();
    assert!(opener.open_piece(&p[0]).is_err());
    opener.open_piece(&p[1]).unwrap();
    assert!(opener.open_piece(&p[1]).is_err());
    // Cut before the last piece: everything opened so far, but not finished.
    let (mut opener, sealer, p) = stream(3);
    opener.open_piece(&p[0]).unwrap();
    opener.open_piece(&p[1]).unwrap();
    assert!(!opener.finished());
    assert_ne!(opener.transcript_hash(), sealer.transcript_hash());
}

#[test]
fn forged_and_reflagged_pieces_are_refused() {
    let (mut opener, _, p) = stream(3);
    opener.open_piece(&p[0]).unwrap();
    for pos in 0..p[1].len() {
        let mut bad = p[1].clone();
        bad[pos] ^= 1;
        assert!(opener.open_piece(&bad).is_err(), "byte {pos}");
    }
    // The flag of a middle piece turned to "last" (the proxy ending the stream early).
    let mut flagged = p[1].clone();
    flagged[0] = FLAG_LAST_FOR_TESTS;
    assert_eq!(
        opener.open_piece(&flagged).unwrap_err(),
        SealError::OpenFailed
    );
    let mut bad_flag = p[1].clone();
    bad_flag[0] = 7;
    assert_eq!(
        opener.open_piece(&bad_flag).unwrap_err(),
        SealError::BadPieceFlags(7)
    );
    assert_eq!(opener.open_piece(&[]).unwrap_err(), SealError::Truncated);
    assert_eq!(
        opener.open_piece(&[0; 5]).unwrap_err(),
        SealError::Truncated
    );
    assert_eq!(
        opener.open_piece(&[0; 40]).unwrap_err(),
        SealError::OpenFailed
    );
    // Still in step after all that.
    opener.open_piece(&p[1]).unwrap();
    opener.open_piece(&p[2]).unwrap();
    assert!(opener.finished());
}
const FLAG_LAST_FOR_TESTS: u8 = 0x01;

#[test]
fn nothing_after_the_last_piece() {
    let (mut opener, mut sealer, p) = stream(2);
    assert_eq!(
        sealer.seal_piece(b"more", false).unwrap_err(),
        SealError::StreamFinished
    );
    assert_eq!(sealer.pieces(), 2);
    opener.open_piece(&p[0]).unwrap();
    opener.open_piece(&p[1]).unwrap();
    assert_eq!(
        opener.open_piece(&p[1]).unwrap_err(),
        SealError::StreamFinished
    );
}

#[test]
fn a_replayed_envelope_gets_a_different_answer_key() {
    // The proxy sends one envelope to the worker twice (or to two recipients): the two answer
    // streams use different keys, so pieces of one never open in the other.
    let ws = workers(2, 41);
    let (env, mut opener) = seal_det(REQUEST, &ws, Padding::None);
    let (_, _, mut a) = open_as(&env, &ws[0]).unwrap();
    let (_, _, mut b) = open_as(&env, &ws[0]).unwrap();
    let (_, _, mut c) = open_as(&env, &ws[1]).unwrap();
    let a0 = a.seal_piece(b"same", false).unwrap();
    let b0 = b.seal_piece(b"same", false).unwrap();
    let c0 = c.seal_piece(b"same", false).unwrap();
    assert_ne!(a0[STREAM_NONCE_LEN + 1..], b0[STREAM_NONCE_LEN + 1..]);
    assert_ne!(a0[STREAM_NONCE_LEN + 1..], c0[STREAM_NONCE_LEN + 1..]);
    opener.open_piece(&a0).unwrap();
    let b1 = b.seal_piece(b"next", true).unwrap();
    assert_eq!(opener.open_piece(&b1).unwrap_err(), SealError::OpenFailed);
    // A piece 0 whose stream nonce was replaced does not open either.
    let (env, mut opener) = seal_det(REQUEST, &ws, Padding::None);
    let (_, _, mut d) = open_as(&env, &ws[0]).unwrap();
    let mut d0 = d.seal_piece(b"x", true).unwrap();
    d0[1] ^= 1;
    assert_eq!(opener.open_piece(&d0).unwrap_err(), SealError::OpenFailed);
}

#[test]
fn pieces_of_another_request_do_not_open() {
    let (mut opener, _, _) = stream(1);
    let ws = workers(1, 40);
    let (env2, _) = seal_request(REQUEST, 500, &recipients(&ws), Padding::None).unwrap();
    let (_, _, mut other) = open_as(&env2, &ws[0]).unwrap();
    let piece = other.seal_piece(b"piece 0", true).unwrap();
    assert_eq!(
        opener.open_piece(&piece).unwrap_err(),
        SealError::OpenFailed
    );
}

#[test]
fn oversize_piece_is_refused() {
    let (mut opener, _, _) = stream(1);
    let big = vec![0u8; MAX_ENVELOPE_LEN + 1];
    assert!(matches!(
        opener.open_piece(&big),
        Err(SealError::TooLarge { .. })
    ));
    let (_, mut sealer, _) = {
        let ws = workers(1, 42);
        let (env, o) = seal_det(b"", &ws, Padding::None);
        let (_, _, s) = open_as(&env, &ws[0]).unwrap();
        (o, s, ())
    };
    assert!(matches!(
        sealer.seal_piece(&big, true),
        Err(SealError::TooLarge { .. })
    ));
    assert_eq!(sealer.pieces(), 0);
}

// === properties ===

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn read_header_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read_header(&bytes);
    }

    #[test]
    fn read_header_never_panics_on_a_valid_prefix(
        tail in proptest::collection::vec(any::<u8>(), 0..400),
        n in 0u8..=10,
    ) {
        let mut bytes = b"CSLD\x01\0\0\0\0\0\0\0\x07".to_vec();
        bytes.push(n);
        bytes.extend_from_slice(&tail);
        let _ = read_header(&bytes);
    }

    #[test]
    fn mutated_envelopes_never_open_and_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in any::<Option<usize>>(),
    ) {
        let ws = workers(2, 50);
        let (env, _) = seal_det(b"property", &ws, Padding::None);
        let mut bad = env.clone();
        for (pos, x) in edits {
            let pos = pos % bad.len();
            bad[pos] ^= x;
        }
        if let Some(cut) = cut {
            bad.truncate(cut % (bad.len() + 1));
        }
        let result = open_as(&bad, &ws[0]);
        prop_assert_eq!(result.is_ok(), bad == env);
    }

    #[test]
    fn any_plaintext_round_trips(
        plaintext in proptest::collection::vec(any::<u8>(), 0..3000),
        max_tokens in any::<u64>(),
        padded in any::<bool>(),
    ) {
        let ws = workers(2, 51);
        let padding = if padded { Padding::Buckets } else { Padding::None };
        let (env, mut opener) =
            seal_request(&plaintext, max_tokens, &recipients(&ws), padding).unwrap();
        let (pt, header, mut sealer) = open_as(&env, &ws[1]).unwrap();
        prop_assert_eq!(&pt, &plaintext);
        prop_assert_eq!(header.max_tokens, max_tokens);
        sealer.set_padding(padding);
        let piece = sealer.seal_piece(&plaintext, true).unwrap();
        prop_assert_eq!(opener.open_piece(&piece).unwrap().data, plaintext);
    }
}

// === known answer ===

/// Bytes 0, 1, 2, … (wrapping), continuing across calls: randomness independent of any RNG
/// algorithm, so the vector below pins only this crate's format and HPKE's.
struct CountingRng(u8);

impl rand::RngCore for CountingRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for b in dst {
            *b = self.0;
            self.0 = self.0.wrapping_add(1);
        }
    }
}

impl rand::CryptoRng for CountingRng {}

/// A known-answer vector: worker key 0x11…, HPKE secret 0x22…, the client's randomness
/// 0x00, 0x01, … (content key first, then HPKE's ephemeral secret), the worker's 0xc8, 0xc9, …
/// (the stream nonce). `tools/check_vector.py` opens the same bytes with an independent
/// implementation of RFC 9180 and the crate doc's layout and key schedule.
#[test]
fn known_answer_envelope_and_first_piece() {
    let keys = SealingKeyPair::from_secret([0x22; 32]);
    let worker = Recipient {
        worker_key: [0x11; 32],
        sealing_key: keys.public(),
    };
    let (env, mut opener) =
        seal_request_with_rng(b"hello", 7, &[worker], Padding::None, &mut CountingRng(0)).unwrap();
    assert_eq!(hex::encode(&env), KAT_ENVELOPE);
    assert_eq!(hex::encode(envelope_hash(&env)), KAT_ENVELOPE_HASH);

    let (pt, _, mut sealer) =
        open_request_with_rng(&env, &[0x11; 32], &[&keys], &mut CountingRng(200)).unwrap();
    assert_eq!(pt, b"hello");
    let piece = sealer.seal_piece(b"world", true).unwrap();
    assert_eq!(hex::encode(&piece), KAT_PIECE_0);
    assert_eq!(hex::encode(sealer.transcript_hash()), KAT_TRANSCRIPT);
    assert_eq!(opener.open_piece(&piece).unwrap().data, b"world");
    assert_eq!(hex::encode(opener.transcript_hash()), KAT_TRANSCRIPT);
}

const KAT_ENVELOPE: &str = concat!(
    "43534c4401000000000000000701",
    "1111111111111111111111111111111111111111111111111111111111111111",
    "0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20",
    "693658254630f73ad8da78fb331bf976cd42f90e0e9c9e83f40c51072a6f7417",
    "381b148b5aeb94a4e9d0d67439383508c430f9f7a7c5346e83a3d3258258e576",
    "d9bab880b73151d16bf1ebff10064986",
    "00000019",
    "74d4f67d622bc41240af5b3cac646fb9aee97fc4b913c7b370",
);
const KAT_ENVELOPE_HASH: &str = "668614034bcd967b222bdeed79ca40de97f1e8ff353e8eca1ddc22d3f227e08f";
const KAT_PIECE_0: &str = concat!(
    "01",
    "c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7",
    "f2af604c277d83a32db86294f113e1b1dd9cd74295cb76b0f1",
);
const KAT_TRANSCRIPT: &str = "451e7f8926d8ab22fd87f4e9051144db90cd643724102076e13d6c00a0356f78";
