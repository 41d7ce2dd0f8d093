//! Test fixtures shared by the workspace's tests: a scratch directory kept when a test fails
//! ([`TempDir`]), loopback ports nobody else in the process got ([`free_port`]), one polling
//! helper ([`eventually`]) and one OpenAI chat-completion request ([`post_chat`], [`chat_body`]).
//!
//! This crate depends on no Cocoon crate, so any crate may dev-depend on it without a cycle
//! (crates/engine does). Nothing role-specific belongs here: how a local network of proxies,
//! workers and a client is configured lives in crates/cocoon/src/devnet.rs, and how the e2e
//! tests start one lives in tests/e2e/harness.rs.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// A free port on 127.0.0.1, never the same twice in this process (the OS may hand a
/// just-released port out again, and tests run in parallel). The port is released before the
/// caller binds it; the nodes' reconnect logic covers the rare steal by another process.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind a free port on 127.0.0.1");
        let mut seen = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !seen.contains(&port) {
            seen.push(port);
            return port;
        }
    }
}

/// A scratch directory under the system temp dir, removed on drop, unless the thread is
/// panicking (a failed test): then it is kept and its path printed, for the logs inside.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory named `cocoon-e2e-{prefix}-{pid}-{unique}`.
    pub fn new(prefix: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "cocoon-e2e-{prefix}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&p).expect("create a temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Polls `f` every 100 ms until it returns true (then true) or `limit` passes (then false).
/// Time is tokio's, so a test with a paused clock does not wait for real.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The chat completion most tests send: model `mock`, one user message, streamed or not.
pub fn chat_body(stream: bool) -> serde_json::Value {
    serde_json::json!({
        "model": "mock",
        "stream": stream,
        "messages": [{"role": "user", "content": "hello there"}],
    })
}

/// A POST to the OpenAI-compatible endpoint at `base` (e.g. a client's `http://127.0.0.1:PORT`),
/// `{base}/v1/chat/completions`, without a body: for callers that send raw bytes, add headers
/// or a timeout, or want the send error instead of a panic. [`post_chat`] sends one.
pub fn chat_request(http: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
    http.post(format!("{base}/v1/chat/completions"))
}

/// POSTs the chat completion `body` (see [`chat_body`]) to the OpenAI-compatible endpoint at
/// `base` and returns the response, whatever its status. Panics if no response comes back.
pub async fn post_chat(
    http: &reqwest::Client,
    base: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    chat_request(http, base)
        .json(body)
        .send()
        .await
        .expect("POST /v1/chat/completions")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_not_handed_out_twice() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ports.len());
    }

    #[test]
    fn temp_dir_is_removed_on_drop() {
        let dir = TempDir::new("testkit");
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("f"), "x").expect("write");
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn temp_dir_is_kept_when_panicking() {
        let path = std::thread::spawn(|| {
            let dir = TempDir::new("testkit-kept");
            let path = dir.path().to_path_buf();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let _dir = dir;
                panic!("failing test");
            }));
            assert!(r.is_err());
            path
        })
        .join()
        .expect("thread");
        assert!(path.exists());
        let _ = std::fs::remove_dir_all(path);
    }

    #[tokio::test(start_paused = true)]
    async fn eventually_reports_success_and_timeout() {
        let mut n = 0;
        assert!(
            eventually(Duration::from_secs(5), || {
                n += 1;
                let done = n == 3;
                async move { done }
            })
            .await
        );
        assert_eq!(n, 3);
        assert!(!eventually(Duration::from_secs(1), || async { false }).await);
    }
}
