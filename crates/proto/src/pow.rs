//! Cocoon's proof-of-work pre-handshake, run in cleartext on the raw TCP stream before TLS so a
//! dialer pays ~2^difficulty SHA-256 before the server spends a TLS handshake and a quote check.
//!
//! Wire (TL-style, little-endian; `tee/cocoon/pow.{h,cpp}`):
//! - server → client, 24 bytes: `cocoon.powSimple#418e1291 difficulty_bits:int32 salt:UInt128`
//! - client → server, 12 bytes: `cocoon.powSimpleResponse#01827319 nonce:int64`
//!
//! Rule: `h = SHA256(salt ‖ nonce as 8 LE bytes)`; read `h[0..8]` as a little-endian `u64`
//! (Cocoon does `td::as<uint64>` on x86) and count its leading zero bits; the nonce is valid if
//! that count is at least the difficulty. Note this is *not* "leading zero bits of the hash as a
//! big-endian string": the bits counted start at the top of byte 7. Difficulty above 64 can
//! never be met. The solver tries nonces 0, 1, 2, … like Cocoon's.
//!
//! Exactly 24 and 12 bytes are read, never more, so the TLS handshake that follows starts on a
//! clean stream. Solving runs on `spawn_blocking` and stops when the caller's future is dropped
//! (a timeout), instead of burning a core to the end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Cocoon's server default (`pow_difficulty`).
pub const DEFAULT_DIFFICULTY: u32 = 20;
/// The highest difficulty a Cocoon client agrees to solve.
pub const MAX_ACCEPTED_DIFFICULTY: u32 = 28;

/// How long a server waits, by default, from sending the challenge until the answer arrives
/// (5 s). A dialer that has not answered by then is idle or far too slow, and must not hold one
/// of the listener's pending-handshake slots for the whole handshake timeout. An honest dialer
/// needs about 2^difficulty hashes: docs/BENCHMARKS.md measures a whole handshake at
/// difficulty 20 at about 50 ms (p50); raise this with the difficulty.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Constructor id of `cocoon.powSimple`.
pub const POW_SIMPLE_ID: u32 = 0x418e_1291;
/// Constructor id of `cocoon.powSimpleResponse`.
pub const POW_SIMPLE_RESPONSE_ID: u32 = 0x0182_7319;

/// Size of the challenge message.
pub const CHALLENGE_LEN: usize = 24;
/// Size of the response message.
pub const RESPONSE_LEN: usize = 12;

/// The solver checks for cancellation this often (nonces).
const CANCEL_CHECK_EVERY: u64 = 1 << 14;

/// Why the PoW exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PowError {
    /// The whole exchange took longer than the caller's timeout.
    #[error("proof of work timed out")]
    Timeout,
    /// The stream failed or ended early.
    #[error("proof of work i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The message did not start with the expected constructor id.
    #[error("unexpected proof-of-work message id {0:#010x}")]
    BadMagic(u32),
    /// The server asked for more work than we accept.
    #[error("server asks for difficulty {requested}, more than our maximum {max}")]
    TooHard { requested: i32, max: u32 },
    /// The server sent a negative difficulty.
    #[error("invalid difficulty {0}")]
    InvalidDifficulty(i32),
    /// The client's nonce does not meet the difficulty.
    #[error("proof of work rejected")]
    Rejected,
    /// The solver thread failed.
    #[error("proof of work solver failed")]
    Solver,
}

/// Leading zero bits of the first 8 hash bytes read as a little-endian `u64`.
fn work_bits(salt: &[u8; 16], nonce: u64) -> u32 {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(nonce.to_le_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first).leading_zeros()
}

/// Whether `nonce` solves the challenge.
pub fn check(salt: &[u8; 16], difficulty: u32, nonce: u64) -> bool {
    work_bits(salt, nonce) >= difficulty
}

/// Finds the smallest solving nonce (CPU-bound: call from a blocking thread; expect about
/// 2^difficulty hashes). Above 64 bits no nonce can exist, so it returns `u64::MAX` at once,
/// which [`check`] rejects.
pub fn solve(salt: &[u8; 16], difficulty: u32) -> u64 {
    if difficulty > 64 {
        return u64::MAX;
    }
    let never = AtomicBool::new(false);
    // For difficulty <= 64 a solution exists among 2^64 nonces with overwhelming probability.
    solve_until(salt, difficulty, &never).unwrap_or(u64::MAX)
}

/// Like [`solve`], but gives up (returning `None`) once `cancel` is set.
fn solve_until(salt: &[u8; 16], difficulty: u32, cancel: &AtomicBool) -> Option<u64> {
    let mut nonce = 0u64;
    loop {
        if check(salt, difficulty, nonce) {
            return Some(nonce);
        }
        nonce = nonce.checked_add(1)?;
        if nonce % CANCEL_CHECK_EVERY == 0 && cancel.load(Ordering::Relaxed) {
            return None;
        }
    }
}

/// Encodes the server's challenge.
pub fn encode_challenge(difficulty: i32, salt: &[u8; 16]) -> [u8; CHALLENGE_LEN] {
    let mut out = [0u8; CHALLENGE_LEN];
    out[..4].copy_from_slice(&POW_SIMPLE_ID.to_le_bytes());
    out[4..8].copy_from_slice(&difficulty.to_le_bytes());
    out[8..].copy_from_slice(salt);
    out
}

/// Decodes the server's challenge into (difficulty, salt).
pub fn decode_challenge(msg: &[u8; CHALLENGE_LEN]) -> Result<(i32, [u8; 16]), PowError> {
    let id = u32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]);
    if id != POW_SIMPLE_ID {
        return Err(PowError::BadMagic(id));
    }
    let difficulty = i32::from_le_bytes([msg[4], msg[5], msg[6], msg[7]]);
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&msg[8..]);
    Ok((difficulty, salt))
}

/// Encodes the client's response.
pub fn encode_response(nonce: u64) -> [u8; RESPONSE_LEN] {
    let mut out = [0u8; RESPONSE_LEN];
    out[..4].copy_from_slice(&POW_SIMPLE_RESPONSE_ID.to_le_bytes());
    out[4..].copy_from_slice(&nonce.to_le_bytes());
    out
}

/// Decodes the client's response into its nonce.
pub fn decode_response(msg: &[u8; RESPONSE_LEN]) -> Result<u64, PowError> {
    let id = u32::from_le_bytes([msg[0], msg[1], msg[2], msg[3]]);
    if id != POW_SIMPLE_RESPONSE_ID {
        return Err(PowError::BadMagic(id));
    }
    let mut nonce = [0u8; 8];
    nonce.copy_from_slice(&msg[4..]);
    Ok(u64::from_le_bytes(nonce))
}

/// Server side: sends a fresh challenge, reads the answer and verifies it, all within `timeout`.
/// Give it a short `timeout` of its own ([`DEFAULT_ANSWER_TIMEOUT`]), not the whole handshake's:
/// until the answer arrives the dialer has paid nothing.
pub async fn serve_challenge<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    difficulty: u32,
    timeout: Duration,
) -> Result<(), PowError> {
    // Difficulties above i32::MAX cannot be sent; above 64 nobody could answer anyway.
    let wire_difficulty = i32::try_from(difficulty).map_err(|_| PowError::InvalidDifficulty(-1))?;
    let exchange = async {
        let salt: [u8; 16] = rand::random();
        io.write_all(&encode_challenge(wire_difficulty, &salt))
            .await?;
        io.flush().await?;
        let mut answer = [0u8; RESPONSE_LEN];
        io.read_exact(&mut answer).await?;
        let nonce = decode_response(&answer)?;
        // One hash: cheap enough for the runtime thread.
        if check(&salt, difficulty, nonce) {
            Ok(())
        } else {
            Err(PowError::Rejected)
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| PowError::Timeout)?
}

/// Client side: reads the challenge, refuses difficulties above `max_difficulty`, solves on a
/// blocking thread and sends the nonce, all within `timeout`.
pub async fn answer_challenge<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    max_difficulty: u32,
    timeout: Duration,
) -> Result<(), PowError> {
    let exchange = async {
        let mut challenge = [0u8; CHALLENGE_LEN];
        io.read_exact(&mut challenge).await?;
        let (difficulty, salt) = decode_challenge(&challenge)?;
        let difficulty_u32 =
            u32::try_from(difficulty).map_err(|_| PowError::InvalidDifficulty(difficulty))?;
        if difficulty_u32 > max_difficulty {
            return Err(PowError::TooHard {
                requested: difficulty,
                max: max_difficulty,
            });
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let _stop = StopOnDrop(cancel.clone());
        let nonce =
            tokio::task::spawn_blocking(move || solve_until(&salt, difficulty_u32, &cancel))
                .await
                .map_err(|_| PowError::Solver)?
                .ok_or(PowError::Solver)?;
        io.write_all(&encode_response(nonce)).await?;
        io.flush().await?;
        Ok(())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| PowError::Timeout)?
}

/// Tells the blocking solver to stop when the exchange future is dropped or finishes.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: [u8; 16] = *b"0123456789abcdef";

    #[test]
    fn solve_then_check() {
        for difficulty in [0, 1, 4, 8, 12] {
            let nonce = solve(&SALT, difficulty);
            assert!(check(&SALT, difficulty, nonce), "difficulty {difficulty}");
            // The solver returns the first solution: every smaller nonce fails.
            for smaller in 0..nonce.min(64) {
                assert!(!check(&SALT, difficulty, smaller));
            }
        }
        assert_eq!(solve(&SALT, 0), 0);
    }

    #[test]
    fn wrong_nonce_rejected() {
        let nonce = solve(&SALT, 12);
        // Some neighbour fails at 12 bits (the chance all four pass is 2^-48).
        assert!((1..=4).any(|d| !check(&SALT, 12, nonce + d)));
        assert!(!check(&SALT, 65, nonce));
        assert!(!check(&SALT, 65, solve(&SALT, 65)));
    }

    #[test]
    fn bit_order_matches_cocoon() {
        // Cocoon counts leading zeros of the first 8 hash bytes as a little-endian u64: the
        // count starts at the most significant bit of byte 7.
        let nonce = solve(&SALT, 8);
        let digest = Sha256::new()
            .chain_update(SALT)
            .chain_update(nonce.to_le_bytes())
            .finalize();
        assert_eq!(digest[7], 0, "8 leading bits live in byte 7");
    }

    #[test]
    fn message_layouts() {
        let c = encode_challenge(20, &SALT);
        assert_eq!(&c[..4], &[0x91, 0x12, 0x8e, 0x41]);
        assert_eq!(&c[4..8], &[20, 0, 0, 0]);
        assert_eq!(decode_challenge(&c).unwrap(), (20, SALT));
        let r = encode_response(0x0102);
        assert_eq!(&r[..4], &[0x19, 0x73, 0x82, 0x01]);
        assert_eq!(decode_response(&r).unwrap(), 0x0102);
        assert!(matches!(
            decode_response(&[0u8; 12]),
            Err(PowError::BadMagic(0))
        ));
    }

    #[tokio::test]
    async fn exchange_succeeds_and_leaves_the_stream_clean() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move {
            serve_challenge(&mut b, 10, Duration::from_secs(30)).await?;
            let mut next = [0u8; 5];
            b.read_exact(&mut next).await?;
            Ok::<_, PowError>(next)
        });
        answer_challenge(&mut a, MAX_ACCEPTED_DIFFICULTY, Duration::from_secs(30))
            .await
            .unwrap();
        a.write_all(b"hello").await.unwrap();
        assert_eq!(&server.await.unwrap().unwrap(), b"hello");
    }

    #[tokio::test]
    async fn difficulty_zero_is_allowed() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let server =
            tokio::spawn(async move { serve_challenge(&mut b, 0, Duration::from_secs(30)).await });
        answer_challenge(&mut a, 0, Duration::from_secs(30))
            .await
            .unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn too_hard_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        b.write_all(&encode_challenge(29, &SALT)).await.unwrap();
        let err = answer_challenge(&mut a, MAX_ACCEPTED_DIFFICULTY, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                PowError::TooHard {
                    requested: 29,
                    max: 28
                }
            ),
            "{err}"
        );
        b.write_all(&encode_challenge(-1, &SALT)).await.unwrap();
        let err = answer_challenge(&mut a, MAX_ACCEPTED_DIFFICULTY, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(matches!(err, PowError::InvalidDifficulty(-1)), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn silent_peer_times_out() {
        let (mut a, mut _b) = tokio::io::duplex(1024);
        let err = serve_challenge(&mut a, 4, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, PowError::Timeout), "{err}");
        let (mut c, mut _d) = tokio::io::duplex(1024);
        let err = answer_challenge(&mut c, 28, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, PowError::Timeout), "{err}");
    }

    #[tokio::test]
    async fn garbage_answer_rejected() {
        // Wrong magic.
        let (mut a, mut b) = tokio::io::duplex(1024);
        let server =
            tokio::spawn(async move { serve_challenge(&mut b, 8, Duration::from_secs(30)).await });
        let mut challenge = [0u8; CHALLENGE_LEN];
        a.read_exact(&mut challenge).await.unwrap();
        a.write_all(&[0xde; RESPONSE_LEN]).await.unwrap();
        assert!(matches!(
            server.await.unwrap(),
            Err(PowError::BadMagic(0xdede_dede))
        ));

        // Right magic, a nonce that does not solve the challenge.
        let (mut a, mut b) = tokio::io::duplex(1024);
        let server =
            tokio::spawn(async move { serve_challenge(&mut b, 16, Duration::from_secs(30)).await });
        let mut challenge = [0u8; CHALLENGE_LEN];
        a.read_exact(&mut challenge).await.unwrap();
        let (_, salt) = decode_challenge(&challenge).unwrap();
        let bad = (0..).find(|&n| !check(&salt, 16, n)).unwrap();
        a.write_all(&encode_response(bad)).await.unwrap();
        assert!(matches!(server.await.unwrap(), Err(PowError::Rejected)));

        // A truncated answer, then hang-up.
        let (mut a, mut b) = tokio::io::duplex(1024);
        let server =
            tokio::spawn(async move { serve_challenge(&mut b, 8, Duration::from_secs(30)).await });
        let mut challenge = [0u8; CHALLENGE_LEN];
        a.read_exact(&mut challenge).await.unwrap();
        a.write_all(&[1, 2, 3]).await.unwrap();
        drop(a);
        assert!(matches!(server.await.unwrap(), Err(PowError::Io(_))));
    }

    #[test]
    fn cancelled_solver_stops() {
        let cancel = AtomicBool::new(true);
        // Difficulty 64 would take forever; the set flag stops it at the first check.
        assert_eq!(solve_until(&SALT, 64, &cancel), None);
    }
}
