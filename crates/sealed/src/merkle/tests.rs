use proptest::prelude::*;
use sha2_011::{Digest, Sha256};

use super::*;

fn h(parts: &[&[u8]]) -> [u8; 32] {
    let mut d = Sha256::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().into()
}

/// RFC 6962 §2.1 written out the plain way, independent of the code under test.
fn reference_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => h(&[]),
        1 => h(&[&[0], &leaves[0]]),
        n => {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            h(&[
                &[1],
                &reference_root(&leaves[..k]),
                &reference_root(&leaves[k..]),
            ])
        }
    }
}

fn leaves(n: usize) -> Vec<[u8; 32]> {
    (0..n)
        .map(|i| h(&[b"receipt", &(i as u64).to_be_bytes()]))
        .collect()
}

#[test]
fn roots_match_the_reference_for_sizes_0_to_17() {
    assert_eq!(
        hex::encode(root(&[])),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    for n in 0..=17 {
        let l = leaves(n);
        assert_eq!(root(&l), reference_root(&l), "size {n}");
    }
}

#[test]
fn every_proof_verifies_and_wrong_inputs_are_refused() {
    for n in 1..=17usize {
        let l = leaves(n);
        let r = root(&l);
        assert!(inclusion_proof(&l, n).is_none());
        for i in 0..n {
            let p = inclusion_proof(&l, i).unwrap();
            assert_eq!((p.index, p.tree_size), (i as u64, n as u64));
            verify_inclusion(&r, &l[i], &p).unwrap();

            // Wrong leaf, wrong root.
            assert_eq!(
                verify_inclusion(&r, &[0xaa; 32], &p),
                Err(SealError::BadProof)
            );
            let mut bad_root = r;
            bad_root[0] ^= 1;
            assert_eq!(
                verify_inclusion(&bad_root, &l[i], &p),
                Err(SealError::BadProof)
            );
            // Wrong index: every other index of the tree.
            for j in 0..n {
                if j != i {
                    let q = InclusionProof {
                        index: j as u64,
                        ..p.clone()
                    };
                    assert!(
                        verify_inclusion(&r, &l[i], &q).is_err(),
                        "n={n} i={i} as {j}"
                    );
                }
            }
            // A path entry changed, dropped or added. (A wrong tree size is not always
            // noticed: the root alone does not fix the size, see `verify_inclusion`.)
            if !p.path.is_empty() {
                let mut q = p.clone();
                q.path[0] = hex::encode([0u8; 32]);
                assert!(verify_inclusion(&r, &l[i], &q).is_err());
                let mut q = p.clone();
                q.path.pop();
                assert!(verify_inclusion(&r, &l[i], &q).is_err());
            }
            let mut q = p.clone();
            q.path.push(hex::encode(r));
            assert!(verify_inclusion(&r, &l[i], &q).is_err());
            // The leaf's hash is not the leaf.
            assert!(verify_inclusion(&r, &leaf_hash(&l[i]), &p).is_err());
        }
    }
}

#[test]
fn rfc6962_seven_leaf_structure() {
    // RFC 6962 §2.1.3: the tree of d0..d6.
    //             hash
    //            /    \
    //           k      l
    //          / \    / \
    //         g   h  i   j
    //        / \ / \ / \ |
    //        a b c d e f d6
    let d = leaves(7);
    let lh: Vec<[u8; 32]> = d.iter().map(leaf_hash).collect();
    let node = |x: &[u8; 32], y: &[u8; 32]| h(&[&[1], x, y]);
    let (a, b, c, dd, e, f) = (lh[0], lh[1], lh[2], lh[3], lh[4], lh[5]);
    let j = lh[6];
    let g = node(&a, &b);
    let hh = node(&c, &dd);
    let i = node(&e, &f);
    let k = node(&g, &hh);
    let l = node(&i, &j);
    assert_eq!(root(&d), node(&k, &l));

    let path = |idx: usize| -> Vec<String> { inclusion_proof(&d, idx).unwrap().path };
    let hx = |x: &[[u8; 32]]| -> Vec<String> { x.iter().map(hex::encode).collect() };
    // "The audit path for d0 is [b, h, l]."
    assert_eq!(path(0), hx(&[b, hh, l]));
    // "The audit path for d3 is [c, g, l]."
    assert_eq!(path(3), hx(&[c, g, l]));
    // "The audit path for d4 is [f, j, k]."
    assert_eq!(path(4), hx(&[f, j, k]));
    // "The audit path for d6 is [i, k]."
    assert_eq!(path(6), hx(&[i, k]));
}

#[test]
fn verification_is_bounded() {
    let l = leaves(3);
    let r = root(&l);
    let p = inclusion_proof(&l, 1).unwrap();
    let long = InclusionProof {
        path: vec![hex::encode([0u8; 32]); MAX_PATH_LEN + 1],
        ..p.clone()
    };
    assert_eq!(verify_inclusion(&r, &l[1], &long), Err(SealError::BadProof));
    let huge = InclusionProof {
        tree_size: MAX_TREE_SIZE + 1,
        ..p.clone()
    };
    assert_eq!(verify_inclusion(&r, &l[1], &huge), Err(SealError::BadProof));
    let empty = InclusionProof {
        tree_size: 0,
        index: 0,
        path: vec![],
    };
    assert_eq!(
        verify_inclusion(&r, &l[1], &empty),
        Err(SealError::BadProof)
    );
    let out = InclusionProof {
        index: 3,
        ..p.clone()
    };
    assert_eq!(verify_inclusion(&r, &l[1], &out), Err(SealError::BadProof));
    let mut not_hex = p.clone();
    not_hex.path[0] = "xyz".into();
    assert_eq!(
        verify_inclusion(&r, &l[1], &not_hex),
        Err(SealError::BadProof)
    );
    // A single leaf: empty path.
    let one = leaves(1);
    let p = inclusion_proof(&one, 0).unwrap();
    assert!(p.path.is_empty());
    verify_inclusion(&root(&one), &one[0], &p).unwrap();
}

#[test]
fn proof_serde_form() {
    let l = leaves(5);
    let p = inclusion_proof(&l, 4).unwrap();
    let j = serde_json::to_value(&p).unwrap();
    assert_eq!(j["index"], 4);
    assert_eq!(j["tree_size"], 5);
    assert_eq!(serde_json::from_value::<InclusionProof>(j).unwrap(), p);
}

proptest! {
    #[test]
    fn proofs_verify_for_any_size(n in 1usize..300, pick in any::<usize>()) {
        let l = leaves(n);
        let i = pick % n;
        let p = inclusion_proof(&l, i).unwrap();
        prop_assert!(verify_inclusion(&root(&l), &l[i], &p).is_ok());
        prop_assert_eq!(root(&l), reference_root(&l));
    }

    #[test]
    fn verify_never_panics(
        index in any::<u64>(),
        tree_size in any::<u64>(),
        path in proptest::collection::vec("[0-9a-f]{0,66}", 0..70),
    ) {
        let proof = InclusionProof { index, tree_size, path };
        let _ = verify_inclusion(&[0; 32], &[0; 32], &proof);
    }
}
