//! `HttpChain`: the [`Chain`] trait over the TON HTTP API v2 (toncenter shape), which the local chain
//! (`cocoon-localnet`) serves too, so laptop, testnet and mainnet differ only by URL and key.
//!
//! Endpoints used: `POST sendBoc`, `POST runGetMethod`, `GET getAddressInformation` (also for `time`:
//! its `sync_utime`), `GET getTransactions` (paged backwards with `lt` + `hash`), and
//! `GET getConsensusBlock` only where a server gives no `sync_utime`. Every response is read with a byte
//! cap and every request has a timeout; API-level failures (`{"ok":false,...}`) become
//! [`ChainError::Api`]. The shapes were checked against toncenter's servers (`toncenter/ton-http-api`,
//! Python, and `toncenter/ton-http-api-cpp`); see docs/TON.md.
//!
//! Not here: retries/backoff (callers decide; sendBoc is not idempotent from our side). TLS: reqwest is
//! built with `rustls-no-provider`, so [`HttpChain::new`] installs the ring provider process-wide (if none
//! is installed yet) before building its client; `https://` endpoints then verify with the platform roots.

use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::address::TonAddress;
use crate::chain::{AccountState, Chain, ChainError, GetMethodResult, StackEntry, TxId, TxInfo};
use crate::wire;

/// Default response cap (toncenter pages of 100 transactions with BOCs stay well below this).
pub const DEFAULT_MAX_RESPONSE: usize = 8 * 1024 * 1024;
/// Most transactions one `transactions` call asks for (toncenter's own limit is 100).
pub const MAX_TX_PAGE: u32 = 100;

/// Settings of an [`HttpChain`].
#[derive(Clone, Debug)]
pub struct HttpChainConfig {
    /// Base URL the method names are appended to, e.g. `http://127.0.0.1:8081/api/v2`.
    pub base_url: String,
    /// Optional `X-API-Key`.
    pub api_key: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Response body cap in bytes.
    pub max_response: usize,
}

impl HttpChainConfig {
    /// Defaults for a URL. A URL without a path (`https://toncenter.com`, `http://127.0.0.1:8081/`)
    /// gets toncenter's `/api/v2`; a URL with a path is used as given (`…/api/v2`, a provider
    /// whose key is in the path, a reverse proxy's prefix).
    pub fn new(url: &str) -> Self {
        let base_url = base_url(url);
        Self {
            base_url,
            api_key: None,
            timeout: Duration::from_secs(15),
            max_response: DEFAULT_MAX_RESPONSE,
        }
    }
}

/// The base URL for `url`: `/api/v2` appended when it has no path, otherwise as given (without
/// a trailing slash).
fn base_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    if after_scheme.contains('/') {
        url.to_string()
    } else {
        format!("{url}/api/v2")
    }
}

/// TON HTTP API v2 client.
#[derive(Clone, Debug)]
pub struct HttpChain {
    cfg: HttpChainConfig,
    http: reqwest::Client,
}

impl HttpChain {
    /// Builds the client.
    pub fn new(cfg: HttpChainConfig) -> Result<Self, ChainError> {
        // Without a process-wide provider reqwest's builder panics; installing twice is a harmless error.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| ChainError::Transport(e.to_string()))?;
        Ok(Self { cfg, http })
    }

    fn url(&self, method: &str) -> String {
        format!("{}/{method}", self.cfg.base_url)
    }

    fn url_with(&self, method: &str, q: &[(&str, String)]) -> Result<reqwest::Url, ChainError> {
        let mut u = reqwest::Url::parse(&self.url(method))
            .map_err(|e| ChainError::Transport(e.to_string()))?;
        {
            let mut pairs = u.query_pairs_mut();
            for (k, v) in q {
                pairs.append_pair(k, v);
            }
        }
        Ok(u)
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value, ChainError> {
        let req = match &self.cfg.api_key {
            Some(k) => req.header("X-API-Key", k),
            None => req,
        };
        let mut resp = req.send().await.map_err(map_err)?;
        let status = resp.status();
        if let Some(len) = resp.content_length() {
            if len > self.cfg.max_response as u64 {
                return Err(ChainError::TooLarge(self.cfg.max_response));
            }
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(map_err)? {
            if body.len() + chunk.len() > self.cfg.max_response {
                return Err(ChainError::TooLarge(self.cfg.max_response));
            }
            body.extend_from_slice(&chunk);
        }
        let v: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) if !status.is_success() => return Err(ChainError::Status(status.as_u16())),
            Err(e) => return Err(ChainError::Decode(e.to_string())),
        };
        if v.get("ok").and_then(Value::as_bool) == Some(true) {
            return v
                .get("result")
                .cloned()
                .ok_or_else(|| ChainError::Decode("no result".into()));
        }
        // toncenter's rate limiter puts its message in `result` ("Ratelimit exceed"), the
        // servers behind it in `error`.
        let message = v
            .get("error")
            .or_else(|| v.get("result"))
            .and_then(Value::as_str)
            .unwrap_or("unknown error")
            .to_string();
        let code = v
            .get("code")
            .and_then(Value::as_i64)
            .unwrap_or(i64::from(status.as_u16()));
        Err(ChainError::Api { code, message })
    }
}

fn map_err(e: reqwest::Error) -> ChainError {
    if e.is_timeout() {
        ChainError::Timeout
    } else {
        ChainError::Transport(e.to_string())
    }
}

#[async_trait]
impl Chain for HttpChain {
    async fn send_boc(&self, boc: &[u8]) -> Result<(), ChainError> {
        let body = json!({"boc": STANDARD.encode(boc)});
        self.call(self.http.post(self.url("sendBoc")).json(&body))
            .await?;
        Ok(())
    }

    async fn run_get_method(
        &self,
        addr: &TonAddress,
        method: &str,
        stack: Vec<StackEntry>,
    ) -> Result<GetMethodResult, ChainError> {
        let body = json!({"address": addr.to_raw(), "method": method, "stack": wire::stack_to_request(&stack)?});
        let v = self
            .call(self.http.post(self.url("runGetMethod")).json(&body))
            .await?;
        wire::run_result_from_json(&v)
    }

    async fn account_state(&self, addr: &TonAddress) -> Result<AccountState, ChainError> {
        let q = [("address", addr.to_raw())];
        let v = self
            .call(self.http.get(self.url_with("getAddressInformation", &q)?))
            .await?;
        wire::account_from_json(&v)
    }

    async fn transactions(
        &self,
        addr: &TonAddress,
        since_lt: Option<u64>,
        limit: u32,
    ) -> Result<Vec<TxInfo>, ChainError> {
        self.transactions_page(addr, None, since_lt, limit).await
    }

    async fn transactions_from(
        &self,
        addr: &TonAddress,
        from: TxId,
        since_lt: Option<u64>,
        limit: u32,
    ) -> Result<Vec<TxInfo>, ChainError> {
        self.transactions_page(addr, Some(from), since_lt, limit)
            .await
    }

    async fn time(&self) -> Result<u32, ChainError> {
        // What get-methods and contracts see as `now` is the time of the block a state is read
        // at, which getAddressInformation gives as `sync_utime` (any account will do).
        // getConsensusBlock's `timestamp` is the API server's own clock instead (ahead of the
        // chain, and 0 on the Python server until its first block): the fallback only.
        let q = [("address", TonAddress::new(0, [0; 32]).to_raw())];
        let v = self
            .call(self.http.get(self.url_with("getAddressInformation", &q)?))
            .await?;
        if let Some(t) = v
            .get("sync_utime")
            .and_then(Value::as_u64)
            .filter(|&t| t > 0)
        {
            return u32::try_from(t)
                .map_err(|_| ChainError::Decode("sync_utime out of range".into()));
        }
        let v = self
            .call(self.http.get(self.url("getConsensusBlock")))
            .await?;
        let ts = v
            .get("timestamp")
            .and_then(Value::as_f64)
            .ok_or_else(|| ChainError::Decode("timestamp".into()))?;
        if ts < 1.0 {
            return Err(ChainError::Decode(
                "the API server has no consensus block yet (timestamp 0)".into(),
            ));
        }
        if ts > f64::from(u32::MAX) {
            return Err(ChainError::Decode("timestamp out of range".into()));
        }
        Ok(ts as u32)
    }
}

impl HttpChain {
    /// One getTransactions page: newest first, `lt > since_lt`, starting at (and including)
    /// `from` when given (toncenter's `lt` + `hash`, which must go together).
    async fn transactions_page(
        &self,
        addr: &TonAddress,
        from: Option<TxId>,
        since_lt: Option<u64>,
        limit: u32,
    ) -> Result<Vec<TxInfo>, ChainError> {
        let mut q = vec![
            ("address", addr.to_raw()),
            ("limit", limit.clamp(1, MAX_TX_PAGE).to_string()),
            ("archival", "true".to_string()),
        ];
        if let Some(from) = from {
            q.push(("lt", from.lt.to_string()));
            q.push(("hash", hex::encode(from.hash)));
        }
        if let Some(lt) = since_lt {
            q.push(("to_lt", lt.to_string()));
        }
        let v = self
            .call(self.http.get(self.url_with("getTransactions", &q)?))
            .await?;
        let arr = v
            .as_array()
            .ok_or_else(|| ChainError::Decode("transactions".into()))?;
        if arr.len() > MAX_TX_PAGE as usize {
            return Err(ChainError::Decode("too many transactions".into()));
        }
        // toncenter's to_lt is exclusive; filter anyway so a server that treats it inclusively is harmless.
        let txs = arr
            .iter()
            .map(wire::tx_from_json)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(txs
            .into_iter()
            .filter(|t| since_lt.is_none_or(|s| t.lt > s))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::base_url;

    #[test]
    fn api_v2_is_added_only_to_a_url_without_a_path() {
        assert_eq!(
            base_url("https://toncenter.com"),
            "https://toncenter.com/api/v2"
        );
        assert_eq!(
            base_url("http://127.0.0.1:8081/"),
            "http://127.0.0.1:8081/api/v2"
        );
        assert_eq!(
            base_url("https://testnet.toncenter.com/api/v2/"),
            "https://testnet.toncenter.com/api/v2"
        );
        assert_eq!(
            base_url("https://ton.example/key123"),
            "https://ton.example/key123"
        );
        assert_eq!(
            base_url(" http://10.0.0.1/ton/v2/ "),
            "http://10.0.0.1/ton/v2"
        );
    }
}
