//! [`NetworkKind`]: which network a node runs on, the switch that keeps forgeable (insecure
//! software) attestation off the main network.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The network a node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkKind {
    /// A local development network (`cocoon dev`, local chain).
    Dev,
    /// A test network (TON testnet).
    Test,
    /// The main network: only hardware attestation is acceptable.
    Main,
}

impl NetworkKind {
    /// Whether insecure software attestation may be produced or accepted on this network.
    pub fn allows_insecure_attestation(self) -> bool {
        matches!(self, NetworkKind::Dev | NetworkKind::Test)
    }
}

impl fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkKind::Dev => "dev",
            NetworkKind::Test => "test",
            NetworkKind::Main => "main",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_is_lowercase() {
        assert_eq!(
            serde_json::to_string(&NetworkKind::Main).unwrap(),
            "\"main\""
        );
        let n: NetworkKind = serde_json::from_str("\"dev\"").unwrap();
        assert_eq!(n, NetworkKind::Dev);
        assert!(serde_json::from_str::<NetworkKind>("\"Main\"").is_err());
    }

    #[test]
    fn only_main_forbids_insecure() {
        assert!(NetworkKind::Dev.allows_insecure_attestation());
        assert!(NetworkKind::Test.allows_insecure_attestation());
        assert!(!NetworkKind::Main.allows_insecure_attestation());
    }
}
