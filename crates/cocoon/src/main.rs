//! `cocoon`: the one binary. Parses the command line, loads configs, installs logging and
//! signal handling, and calls the role libraries. No protocol or business logic lives here.

mod attest_cmds;
mod chain_cmds;
mod client_cmds;
mod client_keys_cmds;
mod dev;
mod key_manager_cmds;
mod model_cmds;
mod proxy_cmds;
mod receipt_cmds;
mod roles;
mod summarize_cmd;
mod worker_cmds;

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "cocoon",
    version,
    about = "Confidential Compute Open Network: client, proxy, worker and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole local network (proxy, workers, client) on the default ports.
    Dev(dev::DevArgs),
    /// Run a client: the OpenAI-compatible gateway apps talk to.
    Client(roles::ClientArgs),
    /// Run a proxy.
    Proxy(roles::ProxyArgs),
    /// Run a worker.
    Worker(roles::WorkerArgs),
    /// Run a key manager: generates, rotates and announces the network keys, and serves their
    /// private halves to attested proxies and workers.
    KeyManager(roles::KeyManagerArgs),
    /// Run the deterministic mock engine as an OpenAI-compatible HTTP server.
    MockEngine(roles::MockEngineArgs),
    /// Load-test an OpenAI-compatible endpoint, optionally side by side with a baseline.
    Bench(roles::BenchArgs),
    /// Run the local TON chain (TON HTTP API v2 subset on a real TVM, with a dev faucet).
    Chain(chain_cmds::ChainArgs),
    /// TON wallet: new, show, balance, send, faucet.
    Wallet(chain_cmds::WalletArgs),
    /// The root contract (registry of images, models, proxies and prices): deploy, show, owner ops.
    Root(chain_cmds::RootArgs),
    /// Models for the embedded engine: fetch the default model, print its path.
    Model(model_cmds::ModelArgs),
    /// Receipts of sealed requests: `receipt verify FILE` checks one the client kept, offline.
    Receipt(receipt_cmds::ReceiptArgs),
    /// Summarize a Telegram Desktop chat export (`result.json`) through a client.
    Summarize(summarize_cmd::SummarizeArgs),
    /// Attestation tools.
    Attest {
        #[command(subcommand)]
        command: AttestCommand,
    },
}

#[derive(Subcommand)]
enum AttestCommand {
    /// Connect to a node and print its RA-TLS evidence and the verdict (like Cocoon's tdx-info).
    Show(attest_cmds::AttestShowArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Every connection is a descriptor: use what the hard limit allows, not the 1 024 default.
    let _ = cocoon_node::limits::raise_open_files_limit();
    // One TLS crypto provider (ring) for every HTTPS client in the process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Dev(a) => {
                init_logging(a.verbose);
                dev::run(a).await
            }
            Command::Client(roles::ClientArgs {
                action: Some(action),
                ..
            }) => client_cmds::run(action).await,
            Command::Proxy(roles::ProxyArgs {
                action: Some(action),
                ..
            }) => proxy_cmds::run(action).await,
            Command::Worker(roles::WorkerArgs {
                action: Some(action),
                ..
            }) => worker_cmds::run(action).await,
            Command::KeyManager(roles::KeyManagerArgs {
                action: Some(action),
                ..
            }) => key_manager_cmds::run(action).await,
            Command::Client(a) => {
                init_logging(a.common.verbose);
                roles::client(a, shutdown_signal(a_exit_with_parent())).await
            }
            Command::Proxy(a) => {
                init_logging(a.common.verbose);
                roles::proxy(a, shutdown_signal(a_exit_with_parent())).await
            }
            Command::Worker(a) => {
                init_logging(a.common.verbose);
                roles::worker(a, shutdown_signal(a_exit_with_parent())).await
            }
            Command::KeyManager(a) => {
                init_logging(a.common.verbose);
                roles::key_manager(a, shutdown_signal(a_exit_with_parent())).await
            }
            Command::MockEngine(a) => {
                init_logging(false);
                roles::mock_engine(a, shutdown_signal(false)).await
            }
            Command::Bench(a) => {
                init_logging(false);
                roles::bench(a).await
            }
            Command::Chain(a) => {
                init_logging(false);
                chain_cmds::chain(a, shutdown_signal(a_exit_with_parent())).await
            }
            Command::Wallet(a) => chain_cmds::wallet(a).await,
            Command::Root(a) => chain_cmds::root(a).await,
            Command::Model(a) => model_cmds::run(a).await,
            Command::Receipt(a) => receipt_cmds::run(a).await,
            Command::Summarize(a) => summarize_cmd::run(a).await,
            Command::Attest {
                command: AttestCommand::Show(a),
            } => attest_cmds::attest_show(a).await,
        }
    })
}

/// Children started by `cocoon dev` exit when their parent goes away, even after a `kill -9`.
fn a_exit_with_parent() -> bool {
    std::env::var_os(dev::EXIT_WITH_PARENT_ENV).is_some()
}

fn init_logging(verbose: bool) {
    let default = if verbose { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour_logs(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .try_init();
}

/// Logs (written to stdout) are coloured only on a terminal, and never with `NO_COLOR` set to
/// anything non-empty (no-color.org): a log file or a pipe gets plain text.
fn colour_logs(stdout_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// A token cancelled on Ctrl-C, SIGTERM, or (for dev children) the parent's death.
fn shutdown_signal(watch_parent: bool) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let parent = std::os::unix::process::parent_id();
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let parent_gone = async {
            if !watch_parent {
                return std::future::pending::<()>().await;
            }
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                if std::os::unix::process::parent_id() != parent {
                    return;
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
            _ = parent_gone => {}
        }
        t.cancel();
    });
    token
}

/// Where a role finds its config: `--config FILE`, or the role's file in a dev `--data-dir`.
/// Which node an account command acts on, and how it prints (shared by `cocoon client|proxy|
/// worker <action>`).
#[derive(clap::Args, Debug, Clone)]
pub struct ActionTarget {
    /// The role's config file (TOML).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data dir of a `cocoon dev` network (uses that network's config for the role).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print JSON (for scripts).
    #[arg(long)]
    pub json: bool,
}

impl ActionTarget {
    /// The config file to read: `--config`, else `file` in `--data-dir`.
    pub fn config_path(&self, file: &str) -> Option<PathBuf> {
        config_path(&self.config, &self.data_dir, file)
    }
}

pub(crate) fn config_path(
    config: &Option<PathBuf>,
    data_dir: &Option<PathBuf>,
    file: &str,
) -> Option<PathBuf> {
    config
        .clone()
        .or_else(|| data_dir.as_ref().map(|d| d.join(file)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour_logs(true, None));
        assert!(
            !colour_logs(false, None),
            "a log file or pipe gets plain text"
        );
        assert!(!colour_logs(true, Some("1".into())));
        assert!(
            colour_logs(true, Some("".into())),
            "an empty NO_COLOR is unset"
        );
    }
}
