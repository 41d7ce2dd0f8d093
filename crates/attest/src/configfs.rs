//! [`ConfigfsTsmTdx`]: hardware TDX evidence from inside a TD through Linux configfs-tsm
//! (`/sys/kernel/config/tsm/report`), written here from the kernel ABI
//! (Documentation/ABI/testing/configfs-tsm) because the existing crates are AGPL. The same
//! protocol gives `ConfigfsTsmSnp` its SEV-SNP reports (provider `sev_guest`).
//!
//! Per quote: `mkdir <root>/<unique>`, write the 64-byte report data (`SHA-512(claims)`) to
//! `inblob`, read `generation`, read `outblob` (the kernel asks the quoting service for a quote),
//! read `generation` again (a different value means another writer raced us: refuse), check
//! `provider` is `tdx_guest`, `rmdir`. The root is injectable so the path logic is tested against
//! a fake tree in a temporary directory.
//!
//! All of this is blocking file I/O: [`AttestationProvider::evidence`] is synchronous and async
//! callers run identity generation in `spawn_blocking` (see `cocoon-ratls`).
//! Outside a TD (no configfs-tsm, or another provider) construction fails with a clear
//! [`AttestError::TdxUnavailable`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::claims::UserClaims;
use crate::error::AttestError;
use crate::evidence::{EvidenceKind, OwnedEvidence, MAX_QUOTE_LEN};
use crate::provider::AttestationProvider;

/// Where configfs-tsm reports live on Linux.
pub const DEFAULT_TSM_REPORT_ROOT: &str = "/sys/kernel/config/tsm/report";
/// The `provider` value of the TDX guest driver.
const TDX_PROVIDER: &str = "tdx_guest";
/// Bound on small attribute files (`provider`, `generation`).
const MAX_ATTR_LEN: u64 = 256;

static ENTRY_SEQ: AtomicU64 = AtomicU64::new(0);

/// TDX quotes through configfs-tsm.
#[derive(Debug, Clone)]
pub struct ConfigfsTsmTdx {
    root: PathBuf,
}

impl ConfigfsTsmTdx {
    /// The provider on the standard path; fails outside a TD.
    pub fn new() -> Result<Self, AttestError> {
        Self::with_root(DEFAULT_TSM_REPORT_ROOT)
    }

    /// The provider on `root` (tests use a fake tree); fails if `root` is not a directory.
    pub fn with_root(root: impl Into<PathBuf>) -> Result<Self, AttestError> {
        let root = root.into();
        if !root.is_dir() {
            return Err(AttestError::TdxUnavailable(format!(
                "{} does not exist: not running inside a TD with configfs-tsm \
                 (needs Linux >= 6.7, the tdx_guest driver, and configfs mounted)",
                root.display()
            )));
        }
        Ok(Self { root })
    }

    /// The report root in use.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Gets a quote carrying `report_data` (blocking).
    pub fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
        quote_from_root(&self.root, report_data, TDX_PROVIDER)
    }
}

/// One configfs-tsm report from a fresh entry under `root`, whose `provider` must be `provider`.
pub(crate) fn quote_from_root(
    root: &Path,
    report_data: &[u8; 64],
    provider: &str,
) -> Result<Vec<u8>, AttestError> {
    let name = format!(
        "cocoon-{}-{}",
        std::process::id(),
        ENTRY_SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let entry = root.join(name);
    std::fs::create_dir(&entry).map_err(|e| io("create report entry", &entry, e))?;
    let res = quote_via_entry(&entry, report_data, provider);
    // configfs entries are removed with rmdir (their attribute files cannot be unlinked).
    if let Err(e) = std::fs::remove_dir(&entry) {
        tracing::debug!(entry = %entry.display(), error = %e, "could not remove tsm report entry");
    }
    res
}

impl AttestationProvider for ConfigfsTsmTdx {
    fn kind(&self) -> EvidenceKind {
        EvidenceKind::Tdx
    }

    fn evidence(&self, claims: &UserClaims) -> Result<Option<OwnedEvidence>, AttestError> {
        self.quote(&claims.report_data())
            .map(|q| Some(OwnedEvidence::Quote(q)))
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> AttestError {
    AttestError::Io(format!("{what} {}: {e}", path.display()))
}

pub(crate) fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, AttestError> {
    let f = std::fs::File::open(path).map_err(|e| io("open", path, e))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| io("read", path, e))?;
    if buf.len() as u64 > max {
        return Err(AttestError::Io(format!(
            "{} is larger than {max} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

fn read_attr(entry: &Path, name: &str) -> Result<String, AttestError> {
    let b = read_bounded(&entry.join(name), MAX_ATTR_LEN)?;
    Ok(String::from_utf8_lossy(&b).trim().to_owned())
}

/// The configfs-tsm protocol on an existing report entry directory.
pub(crate) fn quote_via_entry(
    entry: &Path,
    report_data: &[u8; 64],
    expected_provider: &str,
) -> Result<Vec<u8>, AttestError> {
    let inblob = entry.join("inblob");
    std::fs::write(&inblob, report_data).map_err(|e| io("write", &inblob, e))?;
    let provider = read_attr(entry, "provider")?;
    if provider != expected_provider {
        return Err(AttestError::TdxUnavailable(format!(
            "configfs-tsm provider is {provider:?}, not {expected_provider:?}"
        )));
    }
    let before = read_attr(entry, "generation")?;
    let quote = read_bounded(&entry.join("outblob"), MAX_QUOTE_LEN as u64)?;
    let after = read_attr(entry, "generation")?;
    if before != after {
        return Err(AttestError::Io(format!(
            "report entry changed while reading (generation {before} -> {after}): concurrent writer"
        )));
    }
    if quote.is_empty() {
        return Err(AttestError::Io(
            "configfs-tsm returned an empty quote".into(),
        ));
    }
    Ok(quote)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh fake report root under the system temp dir, removed on drop.
    struct FakeRoot(PathBuf);
    impl FakeRoot {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "cocoon-tsm-{tag}-{}-{}",
                std::process::id(),
                ENTRY_SEQ.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
        fn entry(&self, provider: &str, generation: &str, outblob: &[u8]) -> PathBuf {
            let e = self.0.join("entry");
            std::fs::create_dir_all(&e).unwrap();
            std::fs::write(e.join("provider"), format!("{provider}\n")).unwrap();
            std::fs::write(e.join("generation"), format!("{generation}\n")).unwrap();
            std::fs::write(e.join("outblob"), outblob).unwrap();
            e
        }
    }
    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn outside_a_td_is_a_clear_error() {
        let err = ConfigfsTsmTdx::with_root("/nonexistent/tsm/report").unwrap_err();
        assert!(matches!(err, AttestError::TdxUnavailable(_)));
        assert!(err.to_string().contains("not running inside a TD"), "{err}");
    }

    #[test]
    fn protocol_writes_report_data_and_reads_quote() {
        let root = FakeRoot::new("ok");
        let e = root.entry("tdx_guest", "1", b"QUOTE-BYTES");
        let claims = UserClaims::new([4; 32]);
        let q = quote_via_entry(&e, &claims.report_data(), TDX_PROVIDER).unwrap();
        assert_eq!(q, b"QUOTE-BYTES");
        assert_eq!(
            std::fs::read(e.join("inblob")).unwrap(),
            claims.report_data().to_vec()
        );
    }

    #[test]
    fn wrong_provider_is_refused() {
        let root = FakeRoot::new("prov");
        let e = root.entry("sev_guest", "1", b"Q");
        let err = quote_via_entry(&e, &[0; 64], TDX_PROVIDER).unwrap_err();
        assert!(err.to_string().contains("sev_guest"), "{err}");
    }

    #[test]
    fn empty_and_oversized_quotes_are_refused() {
        let root = FakeRoot::new("size");
        let e = root.entry("tdx_guest", "1", b"");
        assert!(quote_via_entry(&e, &[0; 64], TDX_PROVIDER).is_err());
        let e = root.entry("tdx_guest", "1", &vec![0u8; MAX_QUOTE_LEN + 1]);
        let err = quote_via_entry(&e, &[0; 64], TDX_PROVIDER).unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    #[test]
    fn provider_creates_a_fresh_entry_under_the_root() {
        // The fake root has no kernel behind it, so reading `provider` fails, but the entry must
        // have been created under the injected root (and the error names that path).
        let root = FakeRoot::new("mk");
        let p = ConfigfsTsmTdx::with_root(&root.0).unwrap();
        assert_eq!(p.kind(), EvidenceKind::Tdx);
        let err = p.evidence(&UserClaims::new([1; 32])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&root.0.display().to_string()), "{msg}");
        assert!(msg.contains("cocoon-"), "{msg}");
        let created: Vec<_> = std::fs::read_dir(&root.0).unwrap().flatten().collect();
        assert_eq!(created.len(), 1);
        assert!(created[0].path().join("inblob").exists());
    }
}
