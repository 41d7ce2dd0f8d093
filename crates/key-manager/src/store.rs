//! The key manager's files under `data_dir`: the network keys (`network-keys.json`) and the
//! identity seed that signs announcements (`identity.key`).
//!
//! Both hold secrets: they are created mode 0600 in a 0700 directory, and a file that group or
//! others may read is refused with the `chmod` that fixes it. The keys file is replaced
//! atomically (a temporary file in the same directory, fsync, rename, fsync of the directory),
//! so a crash leaves either the old keys or the new ones, never a torn file. Reads are bounded.
//! Blocking: call from `spawn_blocking`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use cocoon_field_encryption::SecretSeed;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::core::NetworkKey;

/// The network keys' file name under `data_dir`.
pub const KEYS_FILE: &str = "network-keys.json";
/// The identity seed's file name under `data_dir`.
pub const IDENTITY_FILE: &str = "identity.key";
/// The keys file's format version.
const FORMAT: u32 = 1;
/// Largest keys file read (a thousand keys take about 150 KB).
const MAX_KEYS_FILE: u64 = 1 << 20;
/// Most keys read from the file.
const MAX_STORED_KEYS: usize = 4096;

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not what we wrote (the text says why; it never holds key bytes).
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// Group or others may read it.
    #[error("{0}")]
    NotPrivate(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The keys file on disk.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    format: u32,
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredKey {
    /// Hex of the 32-byte seed.
    seed: String,
    created_at: u64,
    valid_until: u64,
}

impl Drop for StoredKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.seed);
    }
}

/// Creates `dir` (and its parents) if missing; a new directory is mode 0700.
pub fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        b.mode(0o700);
    }
    b.create(dir).map_err(io(dir))
}

/// Reads the network keys; a missing file is no keys (first start).
pub fn load_keys(path: &Path) -> Result<Vec<NetworkKey>, StoreError> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    cocoon_onchain::config::check_private(path, &meta).map_err(StoreError::NotPrivate)?;
    if meta.len() > MAX_KEYS_FILE {
        return Err(invalid(
            path,
            format!("{} bytes; at most {MAX_KEYS_FILE} expected", meta.len()),
        ));
    }
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io(path))?);
    let file: KeysFile = serde_json::from_str(&text)
        // serde_json's message names a position and an expected token, never the input.
        .map_err(|e| invalid(path, format!("not a keys file: {e}")))?;
    if file.format != FORMAT {
        return Err(invalid(
            path,
            format!("format {}; this build reads {FORMAT}", file.format),
        ));
    }
    if file.keys.len() > MAX_STORED_KEYS {
        return Err(invalid(path, format!("more than {MAX_STORED_KEYS} keys")));
    }
    file.keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut seed = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(&k.seed, seed.as_mut_slice())
                .map_err(|_| invalid(path, format!("key {i}: the seed is not 64 hex digits")))?;
            if k.valid_until < k.created_at {
                return Err(invalid(
                    path,
                    format!("key {i}: expires before its creation"),
                ));
            }
            let seed = SecretSeed::from_bytes(*seed);
            Ok(NetworkKey {
                public: seed.public_key(),
                seed,
                created_at: k.created_at,
                valid_until: k.valid_until,
            })
        })
        .collect()
}

/// Writes the network keys atomically (mode 0600).
pub fn save_keys(path: &Path, keys: &[NetworkKey]) -> Result<(), StoreError> {
    let file = KeysFile {
        format: FORMAT,
        keys: keys
            .iter()
            .map(|k| StoredKey {
                seed: hex::encode(k.seed.as_bytes()),
                created_at: k.created_at,
                valid_until: k.valid_until,
            })
            .collect(),
    };
    let text =
        Zeroizing::new(serde_json::to_vec_pretty(&file).map_err(|e| invalid(path, e.to_string()))?);
    write_atomically(path, &text)
}

/// Writes `bytes` to `path` through a temporary file in the same directory: fsync, rename,
/// fsync of the directory. The temporary file is mode 0600 from its creation.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| invalid(path, "not a file path"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    // A leftover from a crash is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let mut f = private_file(&tmp)?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))?;
    // The rename is durable once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Creates `path` (which must not exist) for writing, mode 0600.
fn private_file(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    opts.open(path).map_err(io(path))
}

/// Reads the 32-byte identity seed, or creates one (mode 0600) on first start.
pub fn load_or_create_identity(path: &Path) -> Result<SecretSeed, StoreError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            // Whoever reads this file can announce keys as this key manager.
            cocoon_onchain::config::check_private(path, &meta).map_err(StoreError::NotPrivate)?;
            if meta.len() != 32 {
                return Err(invalid(
                    path,
                    format!("expected 32 bytes, found {}", meta.len()),
                ));
            }
            let bytes = Zeroizing::new(std::fs::read(path).map_err(io(path))?);
            let seed: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| invalid(path, format!("expected 32 bytes, found {}", bytes.len())))?;
            Ok(SecretSeed::from_bytes(seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = SecretSeed::generate(&mut rand::rng());
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                ensure_dir(dir)?;
            }
            write_atomically(path, seed.as_bytes())?;
            Ok(seed)
        }
        Err(e) => Err(io(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cocoon-km-store-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn key(n: u8, at: u64) -> NetworkKey {
        NetworkKey::new(SecretSeed::from_bytes([n; 32]), at, 86_400)
    }

    #[test]
    fn keys_round_trip_in_a_private_file_replaced_atomically() {
        let dir = temp_dir("round-trip");
        ensure_dir(&dir).expect("dir");
        let mode = std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let path = dir.join(KEYS_FILE);
        assert!(load_keys(&path).expect("missing = none").is_empty());
        save_keys(&path, &[key(1, 10), key(2, 20)]).expect("save");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = load_keys(&path).expect("load");
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].seed.as_bytes(), &[2; 32]);
        assert_eq!(back[1].public, SecretSeed::from_bytes([2; 32]).public_key());
        assert_eq!((back[1].created_at, back[1].valid_until), (20, 20 + 86_400));
        // Replaced, not appended; no temporary file left behind.
        save_keys(&path, &[key(3, 30)]).expect("save");
        assert_eq!(load_keys(&path).expect("load").len(), 1);
        assert!(!dir.join(format!("{KEYS_FILE}.tmp")).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_readable_or_mangled_keys_file_is_refused_without_showing_its_content() {
        let dir = temp_dir("refused");
        ensure_dir(&dir).expect("dir");
        let path = dir.join(KEYS_FILE);
        save_keys(&path, &[key(0xab, 1)]).expect("save");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = load_keys(&path).expect_err("readable by others");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        for text in [
            "{".to_string(),
            r#"{"format":2,"keys":[]}"#.to_string(),
            format!(
                r#"{{"format":1,"keys":[{{"seed":"{}zz","created_at":1,"valid_until":2}}]}}"#,
                "ab".repeat(31)
            ),
            format!(
                r#"{{"format":1,"keys":[{{"seed":"{}","created_at":5,"valid_until":2}}]}}"#,
                "ab".repeat(32)
            ),
        ] {
            std::fs::write(&path, &text).expect("write");
            let e = load_keys(&path).expect_err("mangled");
            assert!(!e.to_string().contains(&"ab".repeat(8)), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_identity_is_created_once_and_then_read_back() {
        let dir = temp_dir("identity");
        let path = dir.join(IDENTITY_FILE);
        let first = load_or_create_identity(&path).expect("create");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create_identity(&path).expect("read");
        assert_eq!(first.as_bytes(), again.as_bytes());
        std::fs::write(&path, [1u8; 31]).expect("write");
        assert!(load_or_create_identity(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
