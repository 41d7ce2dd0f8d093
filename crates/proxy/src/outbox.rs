//! Every message the proxy sends to a peer goes through that peer's outbox, so that no caller
//! ever waits on a peer's queue: not a worker connection's loop relaying parts to a client that
//! stopped reading, not a holder of the payment-notices lock. Each outbox has one writer task
//! that feeds the session in order (the session itself closes a peer that accepts no bytes for
//! its write deadline); what waits in the outbox is counted in bytes, and a peer with more than
//! the proxy's `peer_queue_bytes` waiting is closed at once: it loses its own requests (its connection's
//! ending settles them), never anyone else's.
//!
//! What lives here: the outbox and its writer task. What must not: message encoding or any
//! request rule.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cocoon_proto::session::Session;
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;
use tracing::warn;

/// Default of the proxy's `peer_queue_bytes`: bytes that may wait in one peer's outbox on top
/// of its session's own queue (whose byte cap is the session's `max_outbound_bytes`). Far above
/// what an honest peer that reads its socket lets pile up; a peer past it has stopped reading.
pub(crate) const OUTBOX_CAP: usize = 16 << 20;

/// One peer's outbox. Dropping it stops its writer task.
pub(crate) struct Outbox {
    conn: u64,
    session: Session,
    tx: mpsc::UnboundedSender<Bytes>,
    waiting: Arc<AtomicUsize>,
    cap: usize,
    _writer: AbortOnDropHandle<()>,
}

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The session is closed (or closing).
    Closed,
    /// The peer had more than the cap waiting: its session was closed.
    Stalled,
}

impl Outbox {
    /// An outbox feeding `session` (connection `conn`), holding at most `cap` bytes.
    pub(crate) fn new(conn: u64, session: Session, cap: usize) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let waiting = Arc::new(AtomicUsize::new(0));
        let writer = {
            let (session, waiting) = (session.clone(), waiting.clone());
            tokio::spawn(async move {
                while let Some(msg) = rx.recv().await {
                    let len = msg.len();
                    // Waits for room at most the session's write deadline, then the session
                    // closes itself and the rest is dropped.
                    let sent = session.send(msg).await;
                    waiting.fetch_sub(len, Ordering::Relaxed);
                    if sent.is_err() {
                        break;
                    }
                }
            })
        };
        Self {
            conn,
            session,
            tx,
            waiting,
            cap,
            _writer: AbortOnDropHandle::new(writer),
        }
    }

    /// Queues `msg` without waiting. A peer with more than the cap waiting is closed.
    pub(crate) fn push(&self, msg: Bytes) -> Result<(), Refused> {
        if self.session.is_closed() {
            return Err(Refused::Closed);
        }
        let len = msg.len();
        let waiting = self.waiting.fetch_add(len, Ordering::Relaxed) + len;
        if waiting > self.cap {
            self.waiting.fetch_sub(len, Ordering::Relaxed);
            warn!(
                conn = self.conn,
                waiting,
                cap = self.cap,
                "peer is not reading: closing its session"
            );
            self.session.close();
            return Err(Refused::Stalled);
        }
        self.tx.send(msg).map_err(|_| {
            self.waiting.fetch_sub(len, Ordering::Relaxed);
            Refused::Closed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_proto::session::{establish, Session, SessionConfig};
    use std::time::Duration;

    /// A session whose peer never reads (the other end is kept but its inbound never polled).
    async fn stalled_session() -> (Session, impl Sized) {
        let (a, b) = tokio::io::duplex(1024);
        let (ours, theirs) = tokio::join!(
            establish(a, SessionConfig::acceptor()),
            establish(b, SessionConfig::dialer())
        );
        let (session, inbound) = ours.expect("ours");
        (session, (theirs.expect("theirs"), inbound))
    }

    #[tokio::test]
    async fn pushing_never_waits_and_a_peer_past_the_cap_is_closed() {
        let (session, _peer) = stalled_session().await;
        let outbox = Outbox::new(1, session.clone(), 64 << 10);
        let chunk = Bytes::from(vec![0u8; 8 << 10]);
        let mut refused = None;
        // Far more than the session's queue and the outbox together; each push returns at once.
        for _ in 0..2000 {
            let pushed = tokio::time::timeout(Duration::from_millis(100), async {
                outbox.push(chunk.clone())
            })
            .await
            .expect("a push waited");
            if let Err(r) = pushed {
                refused = Some(r);
                break;
            }
        }
        assert_eq!(refused, Some(Refused::Stalled));
        assert!(session.is_closed(), "the stalled peer's session stays open");
        assert_eq!(outbox.push(chunk), Err(Refused::Closed));
    }
}
