//! The Merkle tree over receipt ids, RFC 6962 §2.1 (Certificate Transparency): leaf hash
//! `SHA-256(0x00 ‖ leaf)`, node `SHA-256(0x01 ‖ left ‖ right)`, a tree of n > 1 leaves split at
//! the largest power of two below n, the empty tree's root `SHA-256("")`. Inclusion proofs are
//! RFC 6962 §2.1.1 audit paths (deepest sibling first), verified as RFC 9162 §2.1.3.2 says.
//!
//! What must not live here: storage of leaves or roots, signing of roots, and anything unbounded
//! on untrusted input ([`verify_inclusion`] takes at most [`MAX_PATH_LEN`] path entries and
//! trees of at most [`MAX_TREE_SIZE`] leaves).

use serde::{Deserialize, Serialize};

use crate::{crypto, SealError};

/// Longest audit path [`verify_inclusion`] accepts.
pub const MAX_PATH_LEN: usize = 64;
/// Largest tree [`verify_inclusion`] accepts (2^40 leaves).
pub const MAX_TREE_SIZE: u64 = 1 << 40;

/// Proof that one leaf is at `index` in a tree of `tree_size` leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The leaf's position, from 0.
    pub index: u64,
    /// Number of leaves of the tree.
    pub tree_size: u64,
    /// The audit path, deepest sibling first, as lowercase hex of 32-byte hashes.
    pub path: Vec<String>,
}

/// `SHA-256(0x00 ‖ leaf)`.
pub fn leaf_hash(leaf: &[u8; 32]) -> [u8; 32] {
    crypto::sha256(&[&[0x00], leaf])
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    crypto::sha256(&[&[0x01], left, right])
}

/// The tree head MTH of RFC 6962 §2.1; the empty tree's is SHA-256 of the empty string.
pub fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
    if leaves.is_empty() {
        return crypto::sha256(&[]);
    }
    mth(leaves)
}

/// The audit path of leaf `index`, or `None` when `index` is not a leaf.
pub fn inclusion_proof(leaves: &[[u8; 32]], index: usize) -> Option<InclusionProof> {
    if index >= leaves.len() {
        return None;
    }
    let mut path = Vec::new();
    audit_path(index, leaves, &mut path);
    Some(InclusionProof {
        index: u64::try_from(index).ok()?,
        tree_size: u64::try_from(leaves.len()).ok()?,
        path: path.iter().map(hex::encode).collect(),
    })
}

/// Checks that `leaf` (a receipt id, before leaf hashing) is at `proof.index` in the tree of
/// `proof.tree_size` leaves whose root is `root`. Bounded: at most [`MAX_PATH_LEN`] path
/// entries, at most [`MAX_TREE_SIZE`] leaves; anything out of bounds or not leading to `root`
/// is [`SealError::BadProof`].
///
/// As in RFC 6962, the root alone does not fix the tree size (the leftmost leaf of a tree of 3
/// has the audit path it would have in a tree of 4): check `proof.tree_size` against the size
/// the root was published (signed) with.
pub fn verify_inclusion(
    root: &[u8; 32],
    leaf: &[u8; 32],
    proof: &InclusionProof,
) -> Result<(), SealError> {
    if proof.path.len() > MAX_PATH_LEN
        || proof.tree_size == 0
        || proof.tree_size > MAX_TREE_SIZE
        || proof.index >= proof.tree_size
    {
        return Err(SealError::BadProof);
    }
    // RFC 9162 §2.1.3.2.
    let mut fnode = proof.index;
    let mut snode = proof.tree_size - 1;
    let mut r = leaf_hash(leaf);
    for p in &proof.path {
        let mut p_bytes = [0u8; 32];
        hex::decode_to_slice(p, &mut p_bytes).map_err(|_| SealError::BadProof)?;
        if snode == 0 {
            return Err(SealError::BadProof);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(&p_bytes, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, &p_bytes);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode == 0 && r == *root {
        Ok(())
    } else {
        Err(SealError::BadProof)
    }
}

/// MTH of a non-empty list.
fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves {
        [leaf] => leaf_hash(leaf),
        _ => {
            let (left, right) = leaves.split_at(split_point(leaves.len()));
            node_hash(&mth(left), &mth(right))
        }
    }
}

/// PATH(m, D[n]) of RFC 6962 §2.1.1, appended to `out`, deepest first. `m < leaves.len()`.
fn audit_path(m: usize, leaves: &[[u8; 32]], out: &mut Vec<[u8; 32]>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split_point(leaves.len());
    let (left, right) = leaves.split_at(k);
    if m < k {
        audit_path(m, left, out);
        out.push(mth(right));
    } else {
        audit_path(m - k, right, out);
        out.push(mth(left));
    }
}

/// The largest power of two smaller than `n` (n > 1).
fn split_point(n: usize) -> usize {
    let p = n.next_power_of_two();
    if p == n {
        n / 2
    } else {
        p / 2
    }
}

#[cfg(test)]
mod tests;
