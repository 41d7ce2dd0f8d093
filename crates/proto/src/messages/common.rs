//! Types outside the role namespaces: the accounting value `tokensUsed`, `ton.blockIdExt`, the
//! root-contract snapshot (`rootConfig.*`) and the key manager (`keyManager.*`: the network keys
//! for v1 field encryption, served to proxies and workers). Proxy-DB and runner-config records are not modelled here.

use bytes::Bytes;
use cocoon_tl::{TlDebug, TlRead, TlWrite};

/// `tokensUsed`: per-category token counts, all already *adjusted* (multiplied by the price
/// multipliers, so `total_tokens_used` is what gets paid). Always bare on the wire.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, TlRead, TlWrite, TlDebug)]
#[tl(schema = "tokensUsed prompt_tokens_used:long cached_tokens_used:long \
               completion_tokens_used:long reasoning_tokens_used:long \
               total_tokens_used:long = TokensUsed")]
pub struct TokensUsed {
    pub prompt_tokens_used: i64,
    pub cached_tokens_used: i64,
    pub completion_tokens_used: i64,
    pub reasoning_tokens_used: i64,
    pub total_tokens_used: i64,
}

/// `ton.blockIdExt` (bare): a full TON block id.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    schema = "ton.blockIdExt workchain:int shard:long seqno:int root_hash:bytes \
               file_hash:bytes = ton.BlockIdExt"
)]
pub struct TonBlockIdExt {
    pub workchain: i32,
    pub shard: i64,
    pub seqno: i32,
    pub root_hash: Bytes,
    pub file_hash: Bytes,
}

/// `rootConfig.registeredProxy` (bare): one proxy in the root contract's registry.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(schema = "rootConfig.registeredProxy seqno:int address:string = rootConfig.RegisteredProxy")]
pub struct RootConfigRegisteredProxy {
    pub seqno: i32,
    pub address: String,
}

/// `rootConfig.registeredPublicKey` (bare, 9060ce5): a network encryption key the root lists.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    schema = "rootConfig.registeredPublicKey public_key:int256 key_type:int expire_at:int \
               = rootConfig.RegisteredPublicKey"
)]
pub struct RootConfigRegisteredPublicKey {
    pub public_key: [u8; 32],
    pub key_type: i32,
    pub expire_at: i32,
}

/// `rootConfig.pseudo`: the fake-TON root snapshot.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "rootConfig.pseudo proxy_hashes:(vector int256) worker_hashes:(vector int256) \
              model_hashes:(vector int256) model_types:(vector string) \
              registered_proxies:(vector rootConfig.registeredProxy) price_per_token:int \
              worker_fee_per_token:int last_proxy_seqno:int version:int params_version:int \
              registered_public_keys:(vector rootConfig.registeredPublicKey) \
              key_manager_address:string proxy_sc_code:string worker_sc_code:string client_sc_code:string \
              root_owner_address:string = rootConfig.Config"
)]
pub struct RootConfigPseudo {
    pub proxy_hashes: Vec<[u8; 32]>,
    pub worker_hashes: Vec<[u8; 32]>,
    pub model_hashes: Vec<[u8; 32]>,
    pub model_types: Vec<String>,
    pub registered_proxies: Vec<RootConfigRegisteredProxy>,
    pub price_per_token: i32,
    pub worker_fee_per_token: i32,
    pub last_proxy_seqno: i32,
    pub version: i32,
    pub params_version: i32,
    pub registered_public_keys: Vec<RootConfigRegisteredPublicKey>,
    pub key_manager_address: String,
    pub proxy_sc_code: String,
    pub worker_sc_code: String,
    pub client_sc_code: String,
    pub root_owner_address: String,
}

/// `rootConfig.configV7` (9060ce5; `configV5` before): the root contract's state as Cocoon
/// reads it from chain.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "rootConfig.configV7 root_owner_address:string proxy_hashes:(vector int256) \
              registered_proxies:(vector rootConfig.registeredProxy) last_proxy_seqno:int \
              worker_hashes:(vector int256) model_hashes:(vector int256) version:int \
              struct_version:int params_version:int unique_id:int is_test:int \
              price_per_token:long worker_fee_per_token:long \
              prompt_tokens_price_multiplier:int cached_tokens_price_multiplier:int \
              completion_tokens_price_multiplier:int reasoning_tokens_price_multiplier:int \
              proxy_delay_before_close:int client_delay_before_close:int \
              min_proxy_stake:long min_client_stake:long \
              registered_public_keys:(vector rootConfig.registeredPublicKey) \
              key_manager_public_key:int256 key_manager_image_hash:int256 \
              key_manager_address:string verified_proxy_keys:(vector int256) \
              verified_worker_keys:(vector int256) verified_key_manager_keys:(vector int256) \
              proxy_sc_code:string worker_sc_code:string client_sc_code:string \
              = rootConfig.Config"
)]
pub struct RootConfigConfigV7 {
    pub root_owner_address: String,
    pub proxy_hashes: Vec<[u8; 32]>,
    pub registered_proxies: Vec<RootConfigRegisteredProxy>,
    pub last_proxy_seqno: i32,
    pub worker_hashes: Vec<[u8; 32]>,
    pub model_hashes: Vec<[u8; 32]>,
    pub version: i32,
    pub struct_version: i32,
    pub params_version: i32,
    pub unique_id: i32,
    pub is_test: i32,
    pub price_per_token: i64,
    pub worker_fee_per_token: i64,
    pub prompt_tokens_price_multiplier: i32,
    pub cached_tokens_price_multiplier: i32,
    pub completion_tokens_price_multiplier: i32,
    pub reasoning_tokens_price_multiplier: i32,
    pub proxy_delay_before_close: i32,
    pub client_delay_before_close: i32,
    pub min_proxy_stake: i64,
    pub min_client_stake: i64,
    pub registered_public_keys: Vec<RootConfigRegisteredPublicKey>,
    pub key_manager_public_key: [u8; 32],
    pub key_manager_image_hash: [u8; 32],
    pub key_manager_address: String,
    pub verified_proxy_keys: Vec<[u8; 32]>,
    pub verified_worker_keys: Vec<[u8; 32]>,
    pub verified_key_manager_keys: Vec<[u8; 32]>,
    pub proxy_sc_code: String,
    pub worker_sc_code: String,
    pub client_sc_code: String,
}

/// `rootConfig.Config` (boxed).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
pub enum RootConfigConfig {
    Pseudo(RootConfigPseudo),
    V7(RootConfigConfigV7),
}

/// `keyManager.privateKey` (bare).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    schema = "keyManager.privateKey valid_until_utime:int private_key:int256 = keyManager.PrivateKey"
)]
pub struct KeyManagerPrivateKey {
    pub valid_until_utime: i32,
    #[tl(redact)]
    pub private_key: [u8; 32],
}

/// `keyManager.privateKeys`: answer to both key-manager queries.
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "keyManager.privateKeys keys:(vector keyManager.privateKey) = keyManager.PrivateKeys"
)]
pub struct KeyManagerPrivateKeys {
    pub keys: Vec<KeyManagerPrivateKey>,
}

/// `keyManager.getWorkerPrivateKeys` (query).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "keyManager.getWorkerPrivateKeys proto_version:int = keyManager.PrivateKeys"
)]
pub struct KeyManagerGetWorkerPrivateKeys {
    pub proto_version: i32,
}

/// `keyManager.getProxyPrivateKeys` (query).
#[derive(Clone, PartialEq, Eq, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "keyManager.getProxyPrivateKeys proto_version:int = keyManager.PrivateKeys"
)]
pub struct KeyManagerGetProxyPrivateKeys {
    pub proto_version: i32,
}
