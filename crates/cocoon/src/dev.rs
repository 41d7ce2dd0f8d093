//! `cocoon dev`: a whole local network on one machine: a key manager, a proxy, N workers and a
//! client, each a separate `cocoon` process talking to the others over RA-TLS on 127.0.0.1 with
//! the default ports, configured for the `dev` network (software attestation, which nothing
//! outside dev accepts). The key manager also serves upstream COCOON's fixed test key.
//!
//! First comes the local TON chain (`cocoon chain`, state in `chain/`): a dev owner wallet
//! (`owner.mnemonic`) is created and funded from the faucet, and a root contract with default
//! params is deployed (idempotent across restarts); every node pays through it (docs/PAYMENTS.md)
//! unless `--no-chain`. The root lists the key manager (its identity key, the dev image and its
//! address), so it announces its keys there, and upstream's test key, as upstream's local
//! network does.
//!
//! The data dir holds the generated configs (`key-manager.toml`, `proxy.toml`, `worker-N.toml`,
//! `client.toml`) and the logs (`logs/*.log`). Configs are written once and reused on restart, so edits stick;
//! `--reset` rewrites them. Ctrl-C stops every process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use cocoon_client::ClientConfig;
use cocoon_devnet::{DevChain, DevNodes, NetworkPlan, PlannedClient, Ports, Purpose};
use cocoon_onchain::ChainConfig;
use cocoon_worker::{EngineConfig, EngineKind};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::process::{Child, Command};

mod shown;

/// Set in the environment of dev children so they exit with their parent.
pub const EXIT_WITH_PARENT_ENV: &str = "COCOON_EXIT_WITH_PARENT";

#[derive(Args)]
pub struct DevArgs {
    /// Where configs, keys and logs live; reused on restart.
    #[arg(long, default_value = ".cocoon/dev")]
    pub data_dir: PathBuf,
    /// Inference engine of the workers: `llama` (embedded llama.cpp serving the default model,
    /// fetched on first use), `mock` (deterministic, for benchmarks) or `openai` (any
    /// OpenAI-compatible server at `--engine-url`).
    #[arg(long, default_value = DEFAULT_ENGINE)]
    pub engine: String,
    /// OpenAI-compatible upstream for `--engine openai`.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub engine_url: String,
    /// Model name the workers advertise. Default: `SmolLM2-135M-Instruct` with `--engine llama`,
    /// `mock` otherwise.
    #[arg(long)]
    pub model: Option<String>,
    /// GGUF file for `--engine llama`. Default: the default model in the models dir.
    #[arg(long)]
    pub model_path: Option<PathBuf>,
    /// Number of workers. Default: 1 with `--engine llama` (each loads the model and uses every
    /// core), 2 otherwise.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Mock engine: completion tokens per answer.
    #[arg(long, default_value_t = 16)]
    pub mock_tokens: u32,
    /// Mock engine: delay between streamed tokens, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub mock_delay_ms: u64,
    /// Port offset added to every default port (run two dev networks side by side).
    #[arg(long, default_value_t = 0)]
    pub port_offset: u16,
    /// Proof-of-work difficulty of the proxy.
    #[arg(long, default_value_t = cocoon_proto::pow::DEFAULT_DIFFICULTY)]
    pub pow_difficulty: u32,
    /// Rewrite the configs even if they exist.
    #[arg(long)]
    pub reset: bool,
    /// Do not start the local TON chain.
    #[arg(long)]
    pub no_chain: bool,
    /// Prepare everything (chain state, wallets, root, configs) and exit without starting the
    /// nodes: then run `cocoon chain --data-dir DIR/chain --listen 127.0.0.1:8081` and each role
    /// with `--data-dir DIR` yourself (tests do this to kill and restart single nodes).
    #[arg(long)]
    pub setup_only: bool,
    /// Log at debug level.
    #[arg(long, short)]
    pub verbose: bool,
}

/// The engine `cocoon dev` uses when none is named: the embedded one when this build has it.
#[cfg(feature = "llama")]
const DEFAULT_ENGINE: &str = "llama";
#[cfg(not(feature = "llama"))]
const DEFAULT_ENGINE: &str = "mock";

/// The name the default embedded model is served under.
const DEFAULT_LLAMA_MODEL: &str = "SmolLM2-135M-Instruct";

impl DevArgs {
    fn is_llama(&self) -> bool {
        self.engine == "llama"
    }

    fn model_name(&self) -> String {
        self.model.clone().unwrap_or_else(|| {
            if self.is_llama() {
                // The name apps use (OpenAI ids are case-sensitive); `cocoon model` knows the
                // same model as `smollm2-135m-instruct`.
                DEFAULT_LLAMA_MODEL.to_string()
            } else {
                "mock".into()
            }
        })
    }

    fn worker_count(&self) -> usize {
        self.workers.unwrap_or(if self.is_llama() { 1 } else { 2 })
    }

    /// What the generated configs depend on; a change rewrites them.
    fn fingerprint(&self, model_path: Option<&Path>) -> String {
        format!(
            "engine={} url={} model={} path={:?} workers={} mock={}/{} offset={} pow={}\n",
            self.engine,
            self.engine_url,
            self.model_name(),
            model_path,
            self.worker_count(),
            self.mock_tokens,
            self.mock_delay_ms,
            self.port_offset,
            self.pow_difficulty
        )
    }
}

/// Writes the network's configs unless they exist for the same invocation (or `--reset`).
fn write_configs(a: &DevArgs, model_path: Option<&Path>, chain: Option<&DevChain>) -> Result<()> {
    let dir = &a.data_dir;
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("create {}", dir.display()))?;
    let fingerprint = format!(
        "{}root={}\n",
        a.fingerprint(model_path),
        chain.map(|c| c.root.as_str()).unwrap_or("-")
    );
    let stamp = dir.join("dev-args.txt");
    let same = std::fs::read_to_string(&stamp).is_ok_and(|s| s == fingerprint);
    let written = ["proxy.toml", "client.toml", "key-manager.toml"]
        .iter()
        .all(|f| dir.join(f).exists());
    if written && !a.reset {
        let have = (0..a.worker_count()).all(|i| dir.join(format!("worker-{i}.toml")).exists());
        if have && same {
            return Ok(());
        }
        if have {
            eprintln!("cocoon dev: options changed since the last run; rewriting the configs");
        }
    }
    let kind = match a.engine.as_str() {
        "llama" => EngineKind::Llama,
        "mock" => EngineKind::Mock,
        "openai" => EngineKind::Openai,
        other => bail!("unknown engine {other:?}; expected llama, mock or openai"),
    };
    let mut secret = [0u8; 24];
    rand::rng().fill_bytes(&mut secret);
    let plan = NetworkPlan {
        proxies: 1,
        workers: a.worker_count(),
        model: a.model_name(),
        engine: EngineConfig {
            kind,
            url: a.engine_url.clone(),
            mock_completion_tokens: a.mock_tokens,
            mock_token_delay: Duration::from_millis(a.mock_delay_ms),
            model_path: model_path.map(Path::to_path_buf),
            ..EngineConfig::default()
        },
        ports: Ports::Dev {
            offset: a.port_offset,
        },
        pow_difficulty: a.pow_difficulty,
        client: PlannedClient {
            owner: "dev-client".into(),
            secret: hex::encode(secret),
            token_credit: None,
        },
        extra_clients: Vec::new(),
        key_manager: true,
        purpose: Purpose::Dev(DevNodes {
            state_dir: chain.map_or_else(|| dir.clone(), |c| c.dir.clone()),
            chain: chain.cloned(),
        }),
    };
    let configs = plan.configs();
    let [proxy] = configs.proxies.as_slice() else {
        bail!("a dev network has one proxy");
    };
    write_toml(&dir.join("proxy.toml"), proxy)?;
    for (i, w) in configs.workers.iter().enumerate() {
        write_toml(&dir.join(format!("worker-{i}.toml")), w)?;
    }
    write_toml(&dir.join("client.toml"), &configs.client)?;
    if let Some(km) = &configs.key_manager {
        write_toml(&dir.join("key-manager.toml"), km)?;
    }
    std::fs::write(&stamp, fingerprint).with_context(|| format!("write {}", stamp.display()))?;
    Ok(())
}

fn write_toml<T: serde::Serialize>(path: &Path, v: &T) -> Result<()> {
    let text = toml::to_string_pretty(v).context("serialize config")?;
    let header = "# Written by `cocoon dev`; edit freely (kept on restart, `--reset` rewrites).\n\
                  # Every key is documented in docs/CONFIGURATION.md.\n\n";
    std::fs::write(path, format!("{header}{text}"))
        .with_context(|| format!("write {}", path.display()))
}

fn spawn(data_dir: &Path, log: &str, args: &[String]) -> Result<Child> {
    let exe = std::env::current_exe().context("locate own binary")?;
    let log_path = data_dir.join("logs").join(format!("{log}.log"));
    let out = std::fs::File::create(&log_path)
        .with_context(|| format!("create {}", log_path.display()))?;
    let err = out.try_clone()?;
    Command::new(exe)
        .args(args)
        .env(EXIT_WITH_PARENT_ENV, "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("start {log}"))
}

pub async fn run(a: DevArgs) -> Result<()> {
    let model_path = if a.is_llama() {
        Some(match &a.model_path {
            Some(p) => p.clone(),
            None => {
                let dir = cocoon_engine::models::default_models_dir();
                eprintln!(
                    "cocoon dev: default model in {} (fetched once, sha256-checked)",
                    dir.display()
                );
                cocoon_engine::models::fetch_default_model(&dir, true)
                    .await
                    .context("fetch the default model (or pass --model-path FILE.gguf, or --engine mock)")?
            }
        })
    } else {
        None
    };
    std::fs::create_dir_all(a.data_dir.join("logs"))
        .with_context(|| format!("create {}", a.data_dir.display()))?;
    let dir = a.data_dir.clone();
    let d = dir.display().to_string();
    let mut children: Vec<(String, Child)> = Vec::new();
    let root = if a.no_chain {
        None
    } else {
        let set_up = async {
            let root = start_chain(&a, &mut children).await?;
            let model = advertised_model(&a, model_path.as_deref()).await?;
            fund_and_register(&a, &root, &model).await?;
            Ok::<_, anyhow::Error>(root)
        };
        match set_up.await {
            Ok(root) => Some(root),
            Err(e) => {
                stop(&mut children).await;
                return Err(e);
            }
        }
    };
    let dev_chain = match &root {
        Some(r) => Some(DevChain {
            api_url: format!("http://{}", Ports::dev_chain(a.port_offset)),
            root: r.clone(),
            dir: std::fs::canonicalize(&dir)
                .with_context(|| format!("resolve {}", dir.display()))?,
        }),
        None => None,
    };
    write_configs(&a, model_path.as_deref(), dev_chain.as_ref())?;
    if a.setup_only {
        stop(&mut children).await;
        println!("Cocoon dev network prepared in {d}");
        return Ok(());
    }
    // The key manager first: the proxy fetches its keys as soon as it starts.
    children.push((
        "key-manager".into(),
        spawn(
            &dir,
            "key-manager",
            &["key-manager".into(), "--data-dir".into(), d.clone()],
        )?,
    ));
    children.push((
        "proxy".into(),
        spawn(
            &dir,
            "proxy",
            &["proxy".into(), "--data-dir".into(), d.clone()],
        )?,
    ));
    for i in 0..a.worker_count() {
        let name = format!("worker-{i}");
        children.push((
            name.clone(),
            spawn(
                &dir,
                &name,
                &[
                    "worker".into(),
                    "--data-dir".into(),
                    d.clone(),
                    "--index".into(),
                    i.to_string(),
                ],
            )?,
        ));
    }
    children.push((
        "client".into(),
        spawn(
            &dir,
            "client",
            &["client".into(), "--data-dir".into(), d.clone()],
        )?,
    ));
    let client: ClientConfig = cocoon_node::config::load_toml(&dir.join("client.toml"))?;
    let base = format!("http://{}", client.http_listen);
    eprintln!(
        "cocoon dev: starting key manager, proxy, {} worker(s) and client (logs in {}/logs)",
        a.worker_count(),
        d
    );

    let ready = wait_ready(&base, a.worker_count(), &mut children);
    let outcome = tokio::select! {
        r = ready => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(e) = outcome {
        stop(&mut children).await;
        return Err(e);
    }
    let model = a.model_name();
    println!("Cocoon dev network ready: {base}");
    println!("  curl -s {base}/v1/models");
    println!("  curl -s {base}/v1/chat/completions -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}]}}'");
    println!(
        "  stats: {base}/stats  http://127.0.0.1:{}/stats  http://127.0.0.1:{}/stats  http://127.0.0.1:{}/stats (key manager)",
        11000 + a.port_offset,
        12000 + a.port_offset,
        13000 + a.port_offset
    );
    let shown = shown::Shown::from_env();
    let (exe, data) = (shown.exe(), shown.path(&dir));
    if let Some(root) = &root {
        let chain = format!("http://{}", Ports::dev_chain(a.port_offset));
        println!("  local TON chain: {chain}  root contract: {root}");
        println!("  {exe} root show --data-dir {data}");
        println!("  {exe} client balance --data-dir {data}");
        println!("  {exe} worker earnings --data-dir {data}");
    }
    println!("  {exe} proxy status --data-dir {data}");
    println!("Press Ctrl-C to stop.");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let died = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            for (name, c) in children.iter_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    return format!("{name} exited ({status}); see {d}/logs/{name}.log");
                }
            }
        }
    };
    let reason = tokio::select! {
        _ = tokio::signal::ctrl_c() => None,
        _ = term.recv() => None,
        why = died => Some(why),
    };
    stop(&mut children).await;
    match reason {
        None => {
            eprintln!("cocoon dev: stopped");
            Ok(())
        }
        Some(why) => bail!(why),
    }
}

/// Waits until the client lists every worker's model, or a child dies, or 60 s pass.
async fn wait_ready(base: &str, workers: usize, children: &mut [(String, Child)]) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        for (name, c) in children.iter_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                bail!(
                    "{name} exited during start-up ({status}); see its log in the data dir's logs/"
                );
            }
        }
        if let Ok(resp) = http.get(format!("{base}/v1/models")).send().await {
            if let Ok(v) = resp.json::<serde_json::Value>().await {
                let n: usize = v["data"]
                    .as_array()
                    .map(|models| {
                        models
                            .iter()
                            .map(|m| m["workers"].as_array().map_or(0, Vec::len))
                            .sum()
                    })
                    .unwrap_or(0);
                if n >= workers {
                    return Ok(());
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the network did not become ready within 60 s; see the logs in the data dir");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// SIGTERM every child, wait a little, then kill what is left.
async fn stop(children: &mut [(String, Child)]) {
    for (_, c) in children.iter() {
        if let Some(pid) = c.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        for (_, c) in children.iter_mut() {
            let _ = c.wait().await;
        }
    })
    .await;
    for (_, c) in children.iter_mut() {
        let _ = c.start_kill();
    }
}

/// Starts `cocoon chain`, creates and funds the dev owner wallet, deploys the root contract.
/// Returns the root's address.
async fn start_chain(a: &DevArgs, children: &mut Vec<(String, Child)>) -> Result<String> {
    let dir = &a.data_dir;
    let listen = Ports::dev_chain(a.port_offset).to_string();
    let url = format!("http://{listen}");
    let chain_dir = dir.join("chain").display().to_string();
    children.push((
        "chain".into(),
        spawn(
            dir,
            "chain",
            &[
                "chain".into(),
                "--data-dir".into(),
                chain_dir,
                "--listen".into(),
                listen,
            ],
        )?,
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http
            .get(format!("{url}/api/v2/getConsensusBlock"))
            .send()
            .await
        {
            if r.status().is_success() {
                break;
            }
        }
        if let Some((name, c)) = children.last_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                bail!("{name} exited during start-up ({status}); see logs/chain.log");
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the local chain did not answer within 30 s; see logs/chain.log");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mnemonic = dir.join("owner.mnemonic").display().to_string();
    if !dir.join("owner.mnemonic").exists() {
        cli(dir, &["wallet", "new", "--mnemonic-file", &mnemonic]).await?;
    }
    cli(
        dir,
        &[
            "wallet",
            "faucet",
            "--mnemonic-file",
            &mnemonic,
            "--chain",
            &url,
            "--amount",
            "1000",
        ],
    )
    .await?;
    let out = cli(
        dir,
        &[
            "root",
            "--mnemonic-file",
            &mnemonic,
            "--chain",
            &url,
            "deploy",
        ],
    )
    .await?;
    out.lines()
        .find_map(|l| {
            l.split_once("deployed at ")
                .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string())
        })
        .filter(|r| !r.is_empty())
        .ok_or_else(|| anyhow::anyhow!("root deploy printed no address; see logs/chain-setup.log"))
}

/// The full model name the workers will advertise (what the root's model registry lists):
/// `name@gguf:<sha256 of the file>` for the embedded engine, the plain name otherwise.
async fn advertised_model(a: &DevArgs, model_path: Option<&Path>) -> Result<String> {
    let Some(path) = model_path.filter(|_| a.is_llama()) else {
        return Ok(a.model_name());
    };
    let path = path.to_path_buf();
    let digest = tokio::task::spawn_blocking(move || -> Result<String> {
        use std::io::Read as _;
        let mut f =
            std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(hex::encode(h.finalize()))
    })
    .await??;
    Ok(format!("{}@gguf:{digest}", a.model_name()))
}

/// Creates and funds the nodes' wallets, and registers the dev images and the model in the
/// root (the dev network's software attestation has one fixed image hash).
async fn fund_and_register(a: &DevArgs, root: &str, model: &str) -> Result<()> {
    let dir = &a.data_dir;
    let url = format!("http://{}", Ports::dev_chain(a.port_offset));
    let mut wallets = vec![
        ("proxy.mnemonic".to_string(), "100"),
        ("client.mnemonic".to_string(), "100"),
        // Each key announcement attaches 0.2 TON and gets most of it back.
        ("key-manager.mnemonic".to_string(), "10"),
    ];
    for i in 0..a.worker_count() {
        wallets.push((format!("worker-{i}.mnemonic"), "10"));
    }
    for (file, amount) in &wallets {
        let path = dir.join(file).display().to_string();
        if !dir.join(file).exists() {
            cli(dir, &["wallet", "new", "--mnemonic-file", &path]).await?;
            cli(
                dir,
                &[
                    "wallet",
                    "faucet",
                    "--mnemonic-file",
                    &path,
                    "--chain",
                    &url,
                    "--amount",
                    amount,
                ],
            )
            .await?;
        }
    }
    let owner = dir.join("owner.mnemonic").display().to_string();
    let image = hex::encode(cocoon_attest::INSECURE_SOFTWARE_IMAGE_HASH);
    let model_hash = hex::encode(Sha256::digest(model.as_bytes()));
    let chain = ChainConfig {
        api_url: url.clone(),
        ..ChainConfig::default()
    }
    .connect()?;
    let root_addr: cocoon_ton::TonAddress = root.parse().context("root address")?;
    let reg = cocoon_onchain::Registry::read(chain.as_ref(), &root_addr).await?;
    let image_bytes = cocoon_attest::INSECURE_SOFTWARE_IMAGE_HASH;
    for (what, hash, kind, listed) in [
        (
            "add-image",
            &image,
            Some("proxy"),
            reg.allows_proxy_image(&image_bytes),
        ),
        (
            "add-image",
            &image,
            Some("worker"),
            reg.allows_worker_image(&image_bytes),
        ),
        ("add-model", &model_hash, None, reg.allows_model(model)),
    ] {
        // Idempotent across restarts.
        if listed {
            continue;
        }
        let mut args = vec![
            "root",
            "--mnemonic-file",
            &owner,
            "--chain",
            &url,
            what,
            "--root",
            root,
            hash,
        ];
        if let Some(k) = kind {
            args.extend(["--kind", k]);
        }
        cli(dir, &args).await?;
    }
    register_key_manager(a, root, &reg).await
}

/// Lists the dev key manager on the root (its identity key, the dev image, its address) so that
/// it can announce its keys and proxies can check its image, and registers upstream's fixed
/// test key as upstream's local network does. Idempotent; skipped on a root older than struct
/// version 4 (which has no key manager: `cocoon root migrate`).
async fn register_key_manager(
    a: &DevArgs,
    root: &str,
    reg: &cocoon_onchain::Registry,
) -> Result<()> {
    let dir = &a.data_dir;
    let Some(listed) = reg.state.key_manager.as_ref() else {
        eprintln!(
            "cocoon dev: the root is at struct version {} and has no key manager (`cocoon root \
             migrate`); the key manager's keys will not be announced",
            reg.state.params.struct_version
        );
        return Ok(());
    };
    let url = format!("http://{}", Ports::dev_chain(a.port_offset));
    let owner = dir.join("owner.mnemonic").display().to_string();
    let identity_file = dir
        .join("key-manager")
        .join(cocoon_key_manager::store::IDENTITY_FILE);
    let identity = tokio::task::spawn_blocking(move || {
        cocoon_key_manager::store::load_or_create_identity(&identity_file).map(|s| s.public_key())
    })
    .await?
    .context("the key manager's identity key")?;
    let image = cocoon_attest::INSECURE_SOFTWARE_IMAGE_HASH;
    let address = format!("127.0.0.1:{}", 13001 + a.port_offset);
    if (
        listed.public_key,
        listed.image_hash,
        listed.address.as_str(),
    ) != (identity, image, address.as_str())
    {
        let (identity, image) = (hex::encode(identity), hex::encode(image));
        cli(
            dir,
            &[
                "root",
                "--mnemonic-file",
                &owner,
                "--chain",
                &url,
                "set-key-manager",
                "--root",
                root,
                "--public-key",
                &identity,
                "--image-hash",
                &image,
                "--address",
                &address,
            ],
        )
        .await?;
    }
    let test_key = cocoon_key_manager::TEST_KEY_PUBLIC;
    if !reg
        .state
        .registered_keys()
        .iter()
        .any(|k| k.public_key == test_key)
    {
        let expire_at = cocoon_key_manager::core::TEST_KEY_VALID_UNTIL.to_string();
        cli(
            dir,
            &[
                "root",
                "--mnemonic-file",
                &owner,
                "--chain",
                &url,
                "add-key",
                "--root",
                root,
                &hex::encode(test_key),
                "--expire-at",
                &expire_at,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Runs one `cocoon` command to completion (bounded), logging its output; returns stdout.
async fn cli(dir: &Path, args: &[&str]) -> Result<String> {
    let exe = std::env::current_exe().context("locate own binary")?;
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(exe).args(args).stdin(Stdio::null()).output(),
    )
    .await
    .with_context(|| format!("`cocoon {}` timed out", args.join(" ")))??;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let log = dir.join("logs").join("chain-setup.log");
    let entry = format!(
        "$ cocoon {}\n{stdout}{}\n",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    use std::io::Write as _;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
    {
        let _ = f.write_all(entry.as_bytes());
    }
    if !out.status.success() {
        bail!(
            "`cocoon {}` failed ({}); see {}",
            args.join(" "),
            out.status,
            log.display()
        );
    }
    Ok(stdout)
}
