//! With the chain on: every new network key goes to the root contract as
//! `root_add_public_key_signed` (op 0x9e0e1821), signed with the key manager's identity key and
//! paid from its `[chain]` wallet, and is sent again every `announce_retry` until the root lists
//! it ([`crate::core::KeyManagerCore::poll_announce`]).
//!
//! The root accepts the message only if its `key_manager_public_key` is our identity key, so
//! nothing is sent (and no TON spent) while it lists another key or none: the stats say why and
//! name the `cocoon root set-key-manager` that fixes it. The registry watch re-reads the root
//! every `[chain] poll_interval`; each round here follows it.

use std::sync::Arc;
use std::time::Duration;

use cocoon_onchain::{NodeChain, OnchainError};
use cocoon_ton::contracts::{add_public_key_signed_body, RegisteredKey};
use cocoon_ton::payments::ProxySigner;
use cocoon_ton::wallet::Transfer;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::core::Announcement;
use crate::Shared;

/// Announces keys until `shutdown`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    chain: NodeChain,
    signer: ProxySigner,
    shutdown: CancellationToken,
) {
    let every = shared
        .cfg
        .chain
        .poll_interval
        .max(Duration::from_millis(100));
    let mut last: Option<String> = None;
    loop {
        let status = tokio::select! {
            _ = shutdown.cancelled() => return,
            s = round(&shared, &chain, &signer) => s,
        };
        if status != last {
            match &status {
                Some(why) => warn!(%why, "keys are not being announced"),
                None if last.is_some() => info!("announcing keys again"),
                None => {}
            }
            shared.stats.set_announce_status(status.clone());
            last = status;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One round: sends what is due; returns why nothing could be sent, if so.
async fn round(shared: &Shared, chain: &NodeChain, signer: &ProxySigner) -> Option<String> {
    let reg = chain.registry.current();
    let ours = signer.public_key();
    match reg.state.key_manager.as_ref() {
        None => {
            return Some(format!(
                "the root (struct version {}) has no key manager: run `cocoon root migrate`, then \
                 `cocoon root set-key-manager --public-key {}`",
                reg.state.params.struct_version,
                hex::encode(ours)
            ))
        }
        Some(km) if km.public_key != ours => {
            return Some(format!(
                "the root lists key manager key {}, not this key manager's {}: run `cocoon root \
                 set-key-manager --public-key {}`",
                hex::encode(km.public_key),
                hex::encode(ours),
                hex::encode(ours)
            ))
        }
        Some(_) => {}
    }
    let listed: Vec<[u8; 32]> = reg
        .state
        .registered_keys()
        .iter()
        .map(|k| k.public_key)
        .collect();
    let now = crate::unix_now();
    let due = shared.core().poll_announce(now, &listed);
    for a in due {
        shared.core().handle_announce_attempt(a.public, now);
        match send(shared, chain, signer, &a, now).await {
            Ok(()) => {
                shared.stats.announcements_sent.inc();
                info!(
                    public_key = %hex::encode(a.public),
                    expire_at = a.expire_at,
                    "key announced to the root"
                );
            }
            Err(e) => {
                shared.stats.announcements_failed.inc();
                return Some(format!(
                    "announcing key {} failed (retried in {:?}): {e}",
                    hex::encode(a.public),
                    shared.cfg.announce_retry
                ));
            }
        }
    }
    None
}

async fn send(
    shared: &Shared,
    chain: &NodeChain,
    signer: &ProxySigner,
    a: &Announcement,
    now: u64,
) -> Result<(), OnchainError> {
    let key = RegisteredKey {
        public_key: a.public,
        key_type: a.key_type,
        expire_at: a.expire_at,
    };
    // Unique enough per message; the root only checks that the signed copy matches.
    let query_id = (now << 16) | u64::from(u16::from_be_bytes([a.public[0], a.public[1]]));
    let body = add_public_key_signed_body(query_id, &key, &chain.sender.address(), signer)?;
    chain
        .sender
        .send(vec![Transfer {
            dest: chain.root,
            value: u128::from(shared.cfg.announce_attach_nanoton),
            bounce: true,
            body: Some(body),
            state_init: None,
        }])
        .await
}
