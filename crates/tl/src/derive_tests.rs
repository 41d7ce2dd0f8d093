//! Tests of the derive macros against hand-written byte layouts (the macros live in
//! `cocoon-tl-derive`, but only this crate can run them).

use bytes::Bytes;
use proptest::prelude::*;

use crate::{
    from_bytes, to_bytes, TlBoxed, TlConstructor, TlDebug, TlEnum, TlError, TlRead, TlWrite,
};

#[derive(Debug, Clone, PartialEq, TlRead, TlWrite)]
#[tl(boxed, schema = "tcp.ping id:long = tcp.Packet")]
struct Ping {
    id: i64,
}

#[derive(Debug, Clone, PartialEq, TlRead, TlWrite)]
#[tl(boxed, id = 0x9c17baf8, name = "tcp.packet")]
struct Packet {
    data: Bytes,
}

#[derive(Debug, Clone, PartialEq, TlRead, TlWrite)]
#[tl(boxed, schema = "test.empty = test.Empty")]
struct Empty;

#[derive(Debug, Clone, PartialEq, TlRead, TlWrite)]
#[tl(schema = "test.pair a:int b:string = test.Pair")]
struct BarePair {
    a: i32,
    b: String,
}

#[derive(Debug, Clone, PartialEq, TlRead, TlWrite)]
#[tl(
    boxed,
    schema = "test.holder items:(vector test.pair) tail:Bool = test.Holder"
)]
struct Holder {
    items: Vec<BarePair>,
    tail: bool,
}

/// Shaped like `client.queryFinalInfo`: two fields share bit 0, one `true` flag at bit 3.
#[derive(Debug, Clone, PartialEq, TlRead, TlWrite)]
#[tl(
    boxed,
    schema = "test.flagged flags:# first:int a:flags.0?string b:flags.0?string \
              t:flags.1?double hot:flags.3?true last:long = test.Flagged"
)]
struct Flagged {
    #[tl(flags)]
    flags: u32,
    first: i32,
    #[tl(flag = 0)]
    a: Option<String>,
    #[tl(flag = 0)]
    b: Option<String>,
    #[tl(flag = 1)]
    t: Option<f64>,
    #[tl(flag = 3, flag_true)]
    hot: bool,
    last: i64,
}

#[derive(Debug, Clone, PartialEq, TlRead, TlWrite)]
enum AnyTest {
    Ping(Ping),
    Packet(Packet),
    Empty(Empty),
}

#[derive(Clone, TlRead, TlWrite, TlDebug)]
#[tl(
    boxed,
    schema = "test.secret key:int256 body:bytes note:string = test.Secret"
)]
struct Secret {
    #[tl(redact)]
    key: [u8; 32],
    body: Bytes,
    note: String,
}

#[derive(Clone, TlRead, TlWrite, TlDebug)]
enum SecretBox {
    Secret(Secret),
}

fn flagged() -> Flagged {
    Flagged {
        flags: 0,
        first: 7,
        a: None,
        b: None,
        t: None,
        hot: false,
        last: -1,
    }
}

fn strategy_flagged() -> impl Strategy<Value = Flagged> {
    (
        any::<u32>(),
        any::<i32>(),
        proptest::option::of(".{0,20}"),
        proptest::option::of(".{0,20}"),
        proptest::option::of(-1e9f64..1e9),
        any::<bool>(),
        any::<i64>(),
    )
        .prop_map(|(flags, first, a, b, t, hot, last)| Flagged {
            // Bits owned by fields are recomputed on encode; keep only the foreign ones.
            flags: flags & !0b1011,
            first,
            a,
            b,
            t,
            hot,
            last,
        })
}

#[test]
fn ids_from_schema_and_attributes() {
    assert_eq!(Ping::ID, 0xbbe9_627c);
    assert_eq!(<Ping as TlConstructor>::TL_NAME, "tcp.ping");
    assert_eq!(Packet::ID, 0x9c17_baf8);
    assert_eq!(<Packet as TlConstructor>::TL_NAME, "tcp.packet");
    assert_eq!(Empty::ID, crate::constructor_id("test.empty = test.Empty"));
    assert_eq!(
        <BarePair as TlConstructor>::CONSTRUCTOR_ID,
        crate::constructor_id("test.pair a:int b:string = test.Pair")
    );
    const { assert!(!<BarePair as TlConstructor>::BOXED) };
    const { assert!(<Ping as TlConstructor>::BOXED) };
}

#[test]
fn boxed_struct_layout() {
    let b = to_bytes(&Ping { id: 2 });
    assert_eq!(b, [0x7c, 0x62, 0xe9, 0xbb, 2, 0, 0, 0, 0, 0, 0, 0]);
    let e = to_bytes(&Empty);
    assert_eq!(e, Empty::ID.to_le_bytes());
    assert_eq!(from_bytes::<Empty>(&Bytes::from(e)).unwrap(), Empty);
}

#[test]
fn wrong_id_is_rejected() {
    let b = Bytes::from(to_bytes(&Ping { id: 2 }));
    assert_eq!(
        from_bytes::<Packet>(&b),
        Err(TlError::UnexpectedConstructor {
            expected: Packet::ID,
            found: Ping::ID
        })
    );
}

#[test]
fn vector_of_bare_structs_has_no_ids() {
    let h = Holder {
        items: vec![BarePair {
            a: 1,
            b: "x".into(),
        }],
        tail: true,
    };
    let b = to_bytes(&h);
    let mut expected = Holder::ID.to_le_bytes().to_vec();
    expected.extend_from_slice(&[1, 0, 0, 0, 1, 0, 0, 0, 1, b'x', 0, 0]);
    expected.extend_from_slice(&crate::BOOL_TRUE.to_le_bytes());
    assert_eq!(b, expected);
    assert_eq!(from_bytes::<Holder>(&Bytes::from(b)).unwrap(), h);
}

#[test]
fn flags_computed_from_options() {
    let mut v = flagged();
    v.t = Some(1.5);
    v.hot = true;
    v.flags = 0b1_0000_0001; // bit 0 is stale (a and b are None), bit 8 is foreign
    let b = to_bytes(&v);
    let flags = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    assert_eq!(flags, 0b1_0000_1010);
    assert_eq!(b.len(), v.encoded_len());
    assert_eq!(b.len(), 4 + 4 + 4 + 8 + 8);
    let back: Flagged = from_bytes(&Bytes::from(b)).unwrap();
    assert_eq!(back.flags, 0b1_0000_1010);
    assert_eq!(back.t, Some(1.5));
    assert!(back.hot);
    assert_eq!(back.a, None);
}

#[test]
fn shared_bit_writes_default_for_absent_sibling() {
    let mut v = flagged();
    v.b = Some("yo".into());
    let b = to_bytes(&v);
    assert_eq!(b.len(), v.encoded_len());
    let back: Flagged = from_bytes(&Bytes::from(b)).unwrap();
    // The wire cannot express "a absent, b present": a comes back as the default.
    assert_eq!(back.a.as_deref(), Some(""));
    assert_eq!(back.b.as_deref(), Some("yo"));
}

#[test]
fn enum_dispatches_on_id() {
    for v in [
        AnyTest::Ping(Ping { id: 9 }),
        AnyTest::Packet(Packet {
            data: Bytes::from_static(b"hello"),
        }),
        AnyTest::Empty(Empty),
    ] {
        let b = to_bytes(&v);
        assert_eq!(b.len(), v.encoded_len());
        assert_eq!(crate::peek_constructor(&b), Some(v.constructor_id()));
        assert_eq!(from_bytes::<AnyTest>(&Bytes::from(b)).unwrap(), v);
    }
    assert_eq!(AnyTest::CONSTRUCTOR_IDS, &[Ping::ID, Packet::ID, Empty::ID]);
    assert_eq!(AnyTest::Ping(Ping { id: 1 }).tl_name(), "tcp.ping");
    assert!(AnyTest::accepts(Packet::ID));
    assert!(!AnyTest::accepts(0));
    let from: AnyTest = Ping { id: 3 }.into();
    assert_eq!(from, AnyTest::Ping(Ping { id: 3 }));
}

#[test]
fn enum_unknown_id() {
    let b = Bytes::from_static(&[1, 2, 3, 4, 0, 0, 0, 0]);
    assert_eq!(
        from_bytes::<AnyTest>(&b),
        Err(TlError::UnknownConstructor(0x0403_0201))
    );
    assert!(matches!(
        from_bytes::<AnyTest>(&Bytes::from_static(&[1, 2])),
        Err(TlError::UnexpectedEof { .. })
    ));
}

#[test]
fn min_encoded_len_is_a_lower_bound() {
    assert_eq!(Ping::MIN_ENCODED_LEN, 12);
    assert_eq!(BarePair::MIN_ENCODED_LEN, 8);
    assert_eq!(Flagged::MIN_ENCODED_LEN, 4 + 4 + 4 + 8);
    assert_eq!(to_bytes(&flagged()).len(), Flagged::MIN_ENCODED_LEN);
}

#[test]
fn debug_hides_bytes_and_redacted_fields() {
    let s = Secret {
        key: [0x41; 32],
        body: Bytes::from_static(b"the prompt text"),
        note: "visible".into(),
    };
    let text = format!("{:?}", SecretBox::Secret(s));
    assert!(text.contains("<redacted>"), "{text}");
    assert!(text.contains("<15 bytes>"), "{text}");
    assert!(text.contains("visible"), "{text}");
    assert!(!text.contains("prompt"), "{text}");
    assert!(!text.contains("65"), "{text}"); // 0x41 printed as a number
}

proptest! {
    #[test]
    fn flagged_roundtrip(v in strategy_flagged()) {
        let b = to_bytes(&v);
        prop_assert_eq!(b.len(), v.encoded_len());
        let back: Flagged = from_bytes(&Bytes::from(b.clone())).unwrap();
        // Shared bit 0: an absent sibling of a present field comes back as "".
        let mut want = v.clone();
        if want.a.is_some() || want.b.is_some() {
            want.a.get_or_insert_with(String::new);
            want.b.get_or_insert_with(String::new);
        }
        prop_assert_eq!(&back.a, &want.a);
        prop_assert_eq!(&back.b, &want.b);
        prop_assert_eq!(back.t, want.t);
        prop_assert_eq!(back.hot, want.hot);
        prop_assert_eq!(back.first, want.first);
        prop_assert_eq!(back.last, want.last);
        // Re-encoding the decoded value is a fixed point.
        prop_assert_eq!(to_bytes(&back), b);
    }

    #[test]
    fn derived_decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let b = Bytes::from(data);
        let _ = from_bytes::<Flagged>(&b);
        let _ = from_bytes::<Holder>(&b);
        let _ = from_bytes::<AnyTest>(&b);
    }

    #[test]
    fn truncated_input_is_an_error(v in strategy_flagged(), cut in 0usize..64) {
        let b = to_bytes(&v);
        let cut = cut.min(b.len().saturating_sub(1));
        let short = Bytes::copy_from_slice(&b[..cut]);
        prop_assert!(from_bytes::<Flagged>(&short).is_err());
    }
}
