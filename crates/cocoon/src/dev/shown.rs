//! How `cocoon dev` writes paths and commands in what it prints, so that a user can paste them
//! as printed: the `cocoon` binary as the user can call it (`cocoon` when that is on `PATH`,
//! else its path), and paths relative to the directory the user started from when they lie
//! under it. `scripts/dev.sh` changes to the repository before `cargo run`, so it passes the
//! user's directory in [`CALLER_DIR_ENV`].
//!
//! What lives here: pure path formatting. What must not: anything that starts processes.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// The directory the user ran `scripts/dev.sh` from (set by that script).
pub const CALLER_DIR_ENV: &str = "COCOON_DEV_CALLER_DIR";

/// Paths as the user at `caller_dir` can type them.
pub struct Shown {
    caller_dir: PathBuf,
    cwd: PathBuf,
    exe: String,
}

impl Shown {
    /// From this process's environment: its binary, its directory, and [`CALLER_DIR_ENV`].
    pub fn from_env() -> Self {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let caller_dir = std::env::var_os(CALLER_DIR_ENV)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| cwd.clone());
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cocoon"));
        let on_path = std::env::var_os("PATH")
            .and_then(|path| which_in(OsStr::new("cocoon"), &path))
            .and_then(|p| std::fs::canonicalize(p).ok());
        let exe_real = std::fs::canonicalize(&exe).unwrap_or_else(|_| exe.clone());
        let mut shown = Self {
            caller_dir,
            cwd,
            exe: String::new(),
        };
        shown.exe = if on_path.as_deref() == Some(exe_real.as_path()) {
            "cocoon".into()
        } else {
            shown.path(&exe_real)
        };
        shown
    }

    /// The `cocoon` binary, as the user can call it.
    pub fn exe(&self) -> &str {
        &self.exe
    }

    /// `p` (relative to this process's directory, or absolute) as the user can type it:
    /// relative to the caller's directory when under it, else absolute; shell-quoted if needed.
    pub fn path(&self, p: &Path) -> String {
        let abs = if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.cwd.join(p)
        };
        let abs = normalize(&abs);
        let text = match abs.strip_prefix(normalize(&self.caller_dir)) {
            Ok(rel) if rel.as_os_str().is_empty() => ".".to_string(),
            Ok(rel) => rel.display().to_string(),
            Err(_) => abs.display().to_string(),
        };
        shell_quote(&text)
    }
}

/// The first executable file called `name` in a `PATH`-style list.
fn which_in(name: &OsStr, path: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Removes `.` and resolves `..` lexically (no file system access).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Single-quotes `s` for a POSIX shell unless it is made only of characters that need none.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(caller: &str, cwd: &str) -> Shown {
        Shown {
            caller_dir: caller.into(),
            cwd: cwd.into(),
            exe: String::new(),
        }
    }

    #[test]
    fn paths_under_the_callers_directory_are_relative() {
        let s = shown("/repo", "/repo");
        assert_eq!(s.path(Path::new(".cocoon/dev")), ".cocoon/dev");
        assert_eq!(
            s.path(Path::new("/repo/target/release/cocoon")),
            "target/release/cocoon"
        );
        assert_eq!(s.path(Path::new("/repo")), ".");
    }

    #[test]
    fn a_caller_elsewhere_gets_absolute_paths() {
        // dev.sh ran from /home/u while cocoon runs in /repo.
        let s = shown("/home/u", "/repo");
        assert_eq!(s.path(Path::new(".cocoon/dev")), "/repo/.cocoon/dev");
        let s = shown("/repo/crates", "/repo");
        assert_eq!(s.path(Path::new("./.cocoon/../x")), "/repo/x");
        // A caller above the repository still gets a relative path.
        let s = shown("/", "/repo");
        assert_eq!(s.path(Path::new("target")), "repo/target");
    }

    #[test]
    fn odd_characters_are_quoted_for_the_shell() {
        let s = shown("/", "/");
        assert_eq!(s.path(Path::new("/my dir/it's")), r"'my dir/it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a-b_c.d/e"), "a-b_c.d/e");
    }

    #[test]
    fn which_finds_only_executable_files() {
        let dir = std::env::temp_dir().join(format!("cocoon-shown-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("dir");
        let f = bin.join("cocoon");
        std::fs::write(&f, "").expect("write");
        let path = std::env::join_paths([dir.join("nothing"), bin.clone()]).expect("join");
        assert_eq!(which_in(OsStr::new("cocoon"), &path), None);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(which_in(OsStr::new("cocoon"), &path), Some(f));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
