//! The official OpenAI SDKs against the client, as an app developer would use them: the Python
//! `openai` package (tests/sdk/openai_python.py) and the Node `openai` package
//! (tests/sdk/openai_node.mjs), at the versions pinned in tests/sdk, on a network serving the
//! real default model. They cover chat, streaming with usage and cost, tool calls whose
//! arguments validate against their schema, `json_schema` output that validates, the Responses
//! API (text, streaming, a function call) and per-app keys (unknown 401, over rate 429 with
//! Retry-After, over budget 402, revoked 401).
//!
//! `scripts/ensure-sdk-deps.sh` installs the packages (scripts/test.sh runs it); without them
//! (or the model) the test is skipped with a loud message, except under CI, where it fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::harness::Net;

const MODEL: &str = "SmolLM2-135M-Instruct";
/// The client's bearer token in this test: full access, and the admin key for keys.
const ADMIN_TOKEN: &str = "sdk-test-admin-token";

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/sdk")
}

fn skip_or_fail(why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("CI must run the SDK tests: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// Runs one SDK script against `net`; its output when it failed.
async fn run(net: &Net, program: &Path, script: &str) -> Option<String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(sdk_dir().join(script))
        .current_dir(sdk_dir())
        .env("COCOON_BASE", &net.base)
        .env("COCOON_MODEL", MODEL)
        .env("COCOON_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(900), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{script} took more than 15 minutes"))
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{script}:\n{text}");
    (!out.status.success()).then(|| format!("{script} failed ({}):\n{text}", out.status))
}

/// This run's API keys file, in the temporary directory.
fn keys_file() -> PathBuf {
    std::env::temp_dir().join(format!("cocoon-sdk-keys-{}.sqlite", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_and_node_sdks_work_against_the_client() {
    let python = sdk_dir().join(".venv/bin/python");
    let node_sdk = sdk_dir().join("node_modules/openai");
    if !python.exists() || !node_sdk.exists() {
        skip_or_fail("the SDKs are not installed; run scripts/ensure-sdk-deps.sh");
        return;
    }
    let dir = cocoon_engine::models::default_models_dir();
    let path = match cocoon_engine::models::fetch_default_model(&dir, false).await {
        Ok(p) => p,
        Err(e) => {
            skip_or_fail(&format!(
                "the default model is not available ({e}); run `cocoon model fetch`"
            ));
            return;
        }
    };
    let net = Net::builder()
        .model(MODEL)
        .llama_model(path)
        .edit_client(|c| {
            c.bearer_token = Some(ADMIN_TOKEN.into());
            // Per-app keys on (test networks have them off), in a file of this test run (an
            // absolute path: the client runs in the test's working directory).
            c.keys.db = keys_file().to_string_lossy().into_owned();
        })
        .start("sdk")
        .await;
    // Both run whatever the first gives, so a failure shows every SDK's view of it.
    let failures: Vec<String> = [
        run(&net, &python, "openai_python.py").await,
        run(&net, Path::new("node"), "openai_node.mjs").await,
    ]
    .into_iter()
    .flatten()
    .collect();
    for suffix in ["", "-shm", "-wal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", keys_file().display()));
    }
    if !failures.is_empty() {
        net.dump_logs();
        panic!("{}", failures.join("\n"));
    }
}
