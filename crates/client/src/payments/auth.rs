//! Authorization with a proxy when payments are on (docs/PAYMENTS.md "Client connect").
//!
//! After `client.connectedToProxy` the client recomputes the proxy contract address
//! (`Network{root params, proxy key}.proxy(proxy owner, root)`) and its own client contract
//! address (`….client(our wallet, proxy contract)`) and refuses the proxy on any mismatch: a
//! proxy that lied could make us pay into a contract it controls. Then, with this proxy's own
//! secret ([`proxy_secret`]: derived from the configured one and the proxy contract, so what one
//! proxy learns does not authorize us at another):
//! - Short `{secret_hash, nonce}` whose hash is `sha256(proxy secret)`: send the proxy secret.
//! - Short with another hash, or Long `{nonce}`: go long. Deploy and fund the contract when it is
//!   not active (`owner_client_change_secret_hash_and_top_up` with `top_up_stakes` stakes and
//!   the StateInit), else set the secret hash when it differs; then `owner_client_register{nonce}`
//!   (all in one wallet message, delivered in order), then `client.authorizeWithProxyLong`, which
//!   the proxy answers once it sees the nonce on chain (300 s).
//!
//! A contract set up before secrets were derived per proxy holds `sha256(configured secret)`:
//! the proxy advertises that hash, it differs from ours, and the long path above sets the
//! derived one on chain (the money stays where it is); later connections go short.
//!
//! What must not live here: the money loop after authorization (task).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cocoon_proto::messages::{
    ClientAuthorizationWithProxy, ClientAuthorizeWithProxyLong, ClientAuthorizeWithProxyShort,
    ClientConnectedToProxy, ClientProxyConnectionAuth, ProxyParams,
};
use cocoon_proto::session::Session;
use cocoon_ton::contracts::{state, ClientOp, Network};
use cocoon_ton::TonAddress;
use sha2::{Digest, Sha256};
use tracing::info;

use super::account::ProxyAccount;
use super::contract::{self, DEPLOY_EXTRA, OP_EXTRA};
use super::Payments;
use crate::link::query;

/// How long the proxy may take to see our registration nonce on chain.
pub const LONG_AUTH_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound on the short-auth query.
const SHORT_AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// The addresses a proxy told us, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addresses {
    pub proxy_owner: TonAddress,
    pub proxy_contract: TonAddress,
    pub client_contract: TonAddress,
}

/// The secret this client uses at one proxy: `hex(HMAC-SHA256(key = secret, message = the
/// proxy contract's raw address "0:<hex>"))`. The proxy learns it (short auth sends it) and
/// anyone can read its SHA-256 on our client contract there; neither tells anything about the
/// configured secret or about the secret at any other proxy contract.
pub fn proxy_secret(secret: &str, proxy_contract: &TonAddress) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    hex::encode(ring::hmac::sign(&key, proxy_contract.to_raw().as_bytes()).as_ref())
}

/// Recomputes both contract addresses and compares them with what the proxy stated.
pub fn verify_addresses(
    network: &Network,
    root: &TonAddress,
    client_owner: &TonAddress,
    params: &ProxyParams,
    client_sc_address: &str,
) -> Result<Addresses, String> {
    let parse = |what: &str, s: &str| {
        s.trim()
            .parse::<TonAddress>()
            .map_err(|e| format!("proxy sent a bad {what} {:?}: {e}", truncate(s)))
    };
    let proxy_owner = parse("proxy_owner_address", &params.proxy_owner_address)?;
    let stated_proxy = parse("proxy_sc_address", &params.proxy_sc_address)?;
    let stated_client = parse("client_sc_address", client_sc_address)?;
    let proxy_contract = network
        .proxy(&proxy_owner, root)
        .map_err(|e| format!("computing the proxy contract: {e}"))?
        .address;
    if proxy_contract != stated_proxy {
        return Err(format!(
            "proxy states its contract is {}, but its key, owner and the root's params give {}; refusing it",
            stated_proxy.to_bounceable(),
            proxy_contract.to_bounceable()
        ));
    }
    let client_contract = network
        .client(client_owner, &proxy_contract)
        .map_err(|e| format!("computing our client contract: {e}"))?
        .address;
    if client_contract != stated_client {
        return Err(format!(
            "proxy states our client contract is {}, but it is {}; refusing it",
            stated_client.to_bounceable(),
            client_contract.to_bounceable()
        ));
    }
    Ok(Addresses {
        proxy_owner,
        proxy_contract,
        client_contract,
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Verifies the proxy's addresses and authorizes (short or long). Returns the proxy's account.
pub(crate) async fn authorize(
    p: &Payments,
    proxy: &str,
    session: &Session,
    connected: &ClientConnectedToProxy,
) -> Result<Arc<ProxyAccount>, String> {
    let registry = p.registry.current();
    let network = registry.network(connected.params.proxy_public_key);
    let owner = p.owner();
    let a = verify_addresses(
        &network,
        &registry.root,
        &owner,
        &connected.params,
        &connected.client_sc_address,
    )?;
    let params = &registry.state.params;
    let account = p.account_for(ProxyAccount::new(
        proxy.to_string(),
        connected.params.proxy_public_key,
        a.proxy_owner,
        a.proxy_contract,
        a.client_contract,
        params.price_per_token,
        params.min_client_stake,
    ));
    account
        .observe(&connected.signed_payment, None, None)
        .map_err(|e| format!("proxy sent a bad signed charge: {e}"))?;
    let secret = proxy_secret(&p.cfg.secret, &a.proxy_contract);
    let our_hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let nonce = match &connected.auth {
        ClientProxyConnectionAuth::Short(s) if s.secret_hash == our_hash => {
            let r: ClientAuthorizationWithProxy = query(
                session,
                &ClientAuthorizeWithProxyShort {
                    data: Bytes::from(secret.into_bytes()),
                },
                SHORT_AUTH_TIMEOUT,
            )
            .await?;
            return finish(&account, r).map(|()| account.clone());
        }
        // The contract has another hash (a new secret, or the configured secret's own hash
        // from before per-proxy secrets): set ours on chain and go long.
        ClientProxyConnectionAuth::Short(s) => s.nonce,
        ClientProxyConnectionAuth::Long(l) => l.nonce,
    };
    register(p, &network, &account, our_hash, nonce).await?;
    let r: ClientAuthorizationWithProxy =
        query(session, &ClientAuthorizeWithProxyLong, LONG_AUTH_TIMEOUT).await?;
    finish(&account, r).map(|()| account.clone())
}

fn finish(account: &ProxyAccount, r: ClientAuthorizationWithProxy) -> Result<(), String> {
    match r {
        ClientAuthorizationWithProxy::Success(s) => account
            .observe(
                &s.signed_payment,
                Some(s.tokens_committed_to_db),
                Some(s.max_tokens),
            )
            .map_err(|e| format!("proxy sent a bad signed charge: {e}")),
        ClientAuthorizationWithProxy::Failed(f) => Err(format!(
            "proxy refused authorization: {} ({})",
            f.error, f.error_code
        )),
    }
}

/// Long auth's on-chain part: deploy + fund or fix the secret hash, then register the nonce.
pub(crate) async fn register(
    p: &Payments,
    network: &Network,
    account: &ProxyAccount,
    secret_hash: [u8; 32],
    nonce: i64,
) -> Result<(), String> {
    let wallet = p.owner();
    let contract = account.client_contract;
    let current = contract::read(p.chain.as_ref(), &contract)
        .await
        .map_err(|e| format!("reading our client contract: {e}"))?;
    let mut transfers = Vec::with_capacity(2);
    let err = |e: cocoon_ton::cells::CellError| format!("building a message: {e}");
    match &current {
        None => {
            let amount = account
                .min_stake
                .saturating_mul(u128::from(p.cfg.top_up_stakes.max(1)));
            let init = network
                .client(&wallet, &account.proxy_contract)
                .and_then(|d| d.state_init_cell())
                .map_err(err)?;
            info!(contract = %contract.to_bounceable(), amount = %cocoon_onchain::amount::format_ton(amount), "deploying and funding our client contract");
            transfers.push(
                contract::op_transfer(
                    &contract,
                    &ClientOp::ChangeSecretHashAndTopUp {
                        amount,
                        secret_hash,
                        send_excesses_to: wallet,
                    },
                    amount.saturating_add(DEPLOY_EXTRA),
                    Some(init),
                )
                .map_err(err)?,
            );
        }
        Some(c) if c.state == state::CLOSED => {
            return Err(format!(
                "our client contract {} at this proxy is closed; it cannot be used again",
                contract.to_bounceable()
            ));
        }
        Some(c) if c.secret_hash != secret_hash => {
            info!(contract = %contract.to_bounceable(), "setting our secret hash on chain");
            transfers.push(
                contract::op_transfer(
                    &contract,
                    &ClientOp::ChangeSecretHash {
                        secret_hash,
                        send_excesses_to: wallet,
                    },
                    OP_EXTRA,
                    None,
                )
                .map_err(err)?,
            );
        }
        Some(_) => {}
    }
    transfers.push(
        contract::op_transfer(
            &contract,
            &ClientOp::Register {
                // TL `long`, contract `uint64`: the same 64 bits.
                nonce: nonce as u64,
                send_excesses_to: wallet,
            },
            OP_EXTRA,
            None,
        )
        .map_err(err)?,
    );
    info!(contract = %contract.to_bounceable(), proxy_contract = %account.proxy_contract.to_bounceable(), "registering with the proxy on chain (long auth)");
    p.sender
        .send(transfers)
        .await
        .map_err(|e| format!("long auth: sending from our wallet failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cocoon_ton::contracts::CocoonParams;

    fn addr(b: u8) -> TonAddress {
        format!("0:{}", hex::encode([b; 32])).parse().expect("addr")
    }

    fn honest(net: &Network, root: &TonAddress, client: &TonAddress) -> (ProxyParams, String) {
        let owner = addr(4);
        let proxy_sc = net.proxy(&owner, root).expect("proxy").address;
        let client_sc = net.client(client, &proxy_sc).expect("client").address;
        (
            ProxyParams {
                flags: 0,
                proxy_public_key: net.proxy_public_key,
                proxy_owner_address: owner.to_bounceable(),
                proxy_sc_address: proxy_sc.to_bounceable(),
                is_test: None,
                proto_version: None,
            },
            client_sc.to_bounceable(),
        )
    }

    #[test]
    fn each_proxy_contract_gets_its_own_secret() {
        let secret = "0123456789abcdef0123456789abcdef";
        let (a, b) = (addr(1), addr(2));
        let at_a = proxy_secret(secret, &a);
        assert_eq!(at_a, proxy_secret(secret, &a), "deterministic");
        assert_eq!(at_a.len(), 64, "hex of 32 bytes");
        assert_ne!(
            at_a,
            proxy_secret(secret, &b),
            "another proxy, another secret"
        );
        assert_ne!(at_a, proxy_secret("another secret of 32 characters!", &a));
        assert_ne!(at_a, secret, "the configured secret is never sent");
        // HMAC-SHA256 with the secret as key over the raw address (RFC 2104), so anyone can
        // check the derivation with standard tools.
        assert_eq!(a.to_raw(), format!("0:{}", hex::encode([1u8; 32])));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"key");
        assert_eq!(
            hex::encode(ring::hmac::sign(
                &key,
                b"The quick brown fox jumps over the lazy dog"
            )),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8",
        );
        assert_eq!(
            proxy_secret("key", &a),
            hex::encode(ring::hmac::sign(&key, a.to_raw().as_bytes()))
        );
    }

    #[test]
    fn honest_addresses_verify_and_lies_are_refused() {
        let net = Network {
            params: CocoonParams::default(),
            proxy_public_key: [3; 32],
        };
        let (root, me) = (addr(1), addr(2));
        let (params, client_sc) = honest(&net, &root, &me);
        let a = verify_addresses(&net, &root, &me, &params, &client_sc).expect("honest");
        assert_eq!(a.proxy_owner, addr(4));
        assert_eq!(a.client_contract.to_bounceable(), client_sc);
        // Raw form is accepted too.
        let raw = a.client_contract.to_raw();
        assert!(verify_addresses(&net, &root, &me, &params, &raw).is_ok());

        // A proxy lying about our client contract.
        let e = verify_addresses(&net, &root, &me, &params, &addr(9).to_bounceable())
            .expect_err("lie about the client contract");
        assert!(e.contains("client contract"), "{e}");
        // A proxy lying about its own contract.
        let mut lie = params.clone();
        lie.proxy_sc_address = addr(9).to_bounceable();
        assert!(verify_addresses(&net, &root, &me, &lie, &client_sc).is_err());
        // Addresses of another client (made for someone else's owner) are refused.
        let (_, theirs) = honest(&net, &root, &addr(7));
        assert!(verify_addresses(&net, &root, &me, &params, &theirs).is_err());
        // Addresses under other params (another price) or another key are refused.
        let other = Network {
            params: CocoonParams {
                price_per_token: 1,
                ..CocoonParams::default()
            },
            proxy_public_key: [3; 32],
        };
        assert!(verify_addresses(&other, &root, &me, &params, &client_sc).is_err());
        let mut other_key = params.clone();
        other_key.proxy_public_key = [8; 32];
        let net8 = Network {
            proxy_public_key: [8; 32],
            ..net.clone()
        };
        assert!(verify_addresses(&net8, &root, &me, &other_key, &client_sc).is_err());
        // Garbage.
        let mut bad = params;
        bad.proxy_owner_address = "dev-proxy-owner".into();
        assert!(verify_addresses(&net, &root, &me, &bad, &client_sc).is_err());
    }
}
