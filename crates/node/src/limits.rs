//! Process limits a node raises for itself at start: today the number of open files.
//!
//! What must not live here: anything per role or per connection (those bounds live in each
//! role's config).

/// Ceiling for the soft limit when the hard limit is unlimited.
const MAX_OPEN_FILES: u64 = 1 << 20;

/// Lets the process open as many files as its hard limit allows (at most 2^20). Every client,
/// worker and HTTP connection is a descriptor, and the default soft limit (often 1 024) exists
/// for select(2), which tokio does not use; Go's runtime raises it the same way. Returns the
/// soft limit before and after, or None when it could not be read or raised (then the process
/// keeps what it had).
pub fn raise_open_files_limit() -> Option<(u64, u64)> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let target = lim.maximum.unwrap_or(MAX_OPEN_FILES).min(MAX_OPEN_FILES);
    let current = lim.current.unwrap_or(u64::MAX);
    if current >= target {
        return Some((current, current));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: lim.maximum,
        },
    )
    .ok()?;
    Some((current, target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one_and_never_lowered() {
        use rustix::process::{getrlimit, Resource};
        let before = getrlimit(Resource::Nofile);
        let (was, now) = raise_open_files_limit().expect("raise");
        let after = getrlimit(Resource::Nofile);
        assert_eq!(after.current, Some(now));
        assert!(now >= was, "lowered from {was} to {now}");
        assert_eq!(
            after.maximum, before.maximum,
            "the hard limit is left alone"
        );
        let hard = before.maximum.unwrap_or(MAX_OPEN_FILES).min(MAX_OPEN_FILES);
        assert!(now >= hard, "soft {now} stays below the hard limit {hard}");
        // Idempotent.
        assert_eq!(raise_open_files_limit(), Some((now, now)));
    }
}
