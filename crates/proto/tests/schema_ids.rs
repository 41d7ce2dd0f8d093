//! Constructor ids: every combinator of `schema/cocoon_api.tl` gets the id Cocoon's generated
//! code uses (`tests/data/constructor_ids.json`), and every Rust message type carries the id of
//! its schema line (the derive computes it from the `schema` attribute at compile time; this
//! checks that attribute against the schema files with the runtime normalizer).

// Test helpers outside #[test] fns unwrap too; a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};

use cocoon_proto::messages::*;
use cocoon_proto::{COCOON_EXT_SCHEMA, COCOON_SCHEMA};
use cocoon_tl::{constructor_id, parse_schema, SchemaEntry, TlConstructor, TlEnum};

fn cocoon_ids() -> HashMap<String, u32> {
    let text = include_str!("data/constructor_ids.json");
    let raw: HashMap<String, String> = serde_json::from_str(text).unwrap();
    raw.into_iter()
        .map(|(hex, name)| (name, u32::from_str_radix(&hex, 16).unwrap()))
        .collect()
}

fn all_entries() -> Vec<SchemaEntry> {
    let mut v = parse_schema(COCOON_SCHEMA);
    v.extend(parse_schema(COCOON_EXT_SCHEMA));
    v
}

/// Built-in combinators of the schema that Cocoon's generated code does not list.
const BUILTINS: &[(&str, u32)] = &[
    ("bytes", 0x1846_14d1),
    ("true", 0x3fed_d339),
    ("boolTrue", 0x9972_75b5),
    ("boolFalse", 0xbc79_9737),
    ("vector", 0x1cb5_c415),
    ("int128", 0x84cc_f7b7),
    ("int256", 0x7bed_eb5b),
];

/// Names in Cocoon's generated id table that are TL primitives, not lines of the schema.
const PRIMITIVES: &[&str] = &["int", "long", "double", "string", "object", "function"];

#[test]
fn every_schema_constructor_has_cocoons_id() {
    let ids = cocoon_ids();
    // 9060ce5's table: every combinator of the schema plus TL's builtins and primitives.
    assert_eq!(ids.len(), 114);
    let entries = parse_schema(COCOON_SCHEMA);
    let mut matched = BTreeSet::new();
    for e in &entries {
        let key = e.name.replace('.', "_");
        match ids.get(&key) {
            Some(want) => assert_eq!(e.id, *want, "{}: computed {:#010x}", e.line, e.id),
            None => {
                let (_, id) = BUILTINS
                    .iter()
                    .find(|(n, _)| *n == e.name)
                    .unwrap_or_else(|| panic!("{} is not in constructor_ids.json", e.name));
                assert_eq!(e.id, *id, "builtin {}", e.name);
            }
        }
        matched.insert(key);
    }
    // And every id Cocoon generated comes from some line of the schema.
    let missing: Vec<_> = ids
        .keys()
        .filter(|k| !matched.contains(*k) && !PRIMITIVES.contains(&k.as_str()))
        .collect();
    assert!(missing.is_empty(), "not in the schema: {missing:?}");
    assert_eq!(entries.len(), 114 - PRIMITIVES.len());
}

#[test]
fn ids_marked_calc_in_the_notes() {
    // cocoon-notes §2.2 computed these two (the .tlo is stale); Cocoon's generated code agrees.
    let ids = cocoon_ids();
    let entries = parse_schema(COCOON_SCHEMA);
    for (name, id) in [
        ("rootConfig.configV7", 0xc512_07cb),
        ("client.getWorkerTypesV2", 0xb213_3d72),
        // Pinned with `#id` in 9060ce5's schema: the ids from before their new fields.
        ("client.runQueryEx", 0xf54c_b74b),
        ("proxy.runQueryEx", 0xc805_e7e2),
        ("worker.params", 0x869c_73ed),
        // New or renamed in 9060ce5 (SCHEMA-DIFF.md section 1).
        ("worker.changeModel", 0x7266_2cee),
        ("worker.changedModel", 0x3402_9366),
        ("keyManager.getProxyPrivateKeys", 0x4135_d0bd),
        ("keyManager.getWorkerPrivateKeys", 0x4b90_e9b1),
    ] {
        let e = entries.iter().find(|e| e.name == name).unwrap();
        assert_eq!(e.id, id, "{name}");
        assert_eq!(ids[&name.replace('.', "_")], id, "{name}");
    }
    assert_eq!(
        <RootConfigConfigV7 as TlConstructor>::CONSTRUCTOR_ID,
        0xc512_07cb
    );
    assert_eq!(
        <ClientRunQueryEx as TlConstructor>::CONSTRUCTOR_ID,
        0xf54c_b74b
    );
    assert_eq!(
        <ProxyRunQueryEx as TlConstructor>::CONSTRUCTOR_ID,
        0xc805_e7e2
    );
    assert_eq!(
        <ClientGetWorkerTypesV2 as cocoon_tl::TlBoxed>::ID,
        0xb213_3d72
    );
}

#[test]
fn well_known_examples() {
    assert_eq!(constructor_id("tcp.ping id:long = tcp.Packet"), 0xbbe9_627c);
    assert_eq!(<TcpPing as cocoon_tl::TlBoxed>::ID, 0xbbe9_627c);
    assert_eq!(<ClientRunQueryEx as cocoon_tl::TlBoxed>::ID, 0xf54c_b74b);
    assert_eq!(<ProxyQueryAnswerEx as cocoon_tl::TlBoxed>::ID, 0x1ce5_74e8);
}

#[test]
fn sections_are_tracked() {
    let entries = parse_schema(COCOON_SCHEMA);
    let get = |n: &str| entries.iter().find(|e| e.name == n).unwrap();
    assert!(get("client.runQueryEx").is_function);
    assert!(get("worker.connectToProxy").is_function);
    assert!(get("http.request").is_function);
    assert!(!get("http.response").is_function);
    assert!(!get("client.queryAnswerEx").is_function);
    assert_eq!(get("tcp.ping").result_type, "tcp.Packet");
}

#[test]
fn v3_schema_ids() {
    let v3 = parse_schema(COCOON_EXT_SCHEMA);
    let names: Vec<_> = v3.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "client.cancelQueryV3",
            "proxy.cancelQueryV3",
            "proxy.queryAnswerPartV3",
            "client.queryWorkerInfoV3",
            "client.queryReceiptV3",
            "proxy.queryReceiptV3",
            "client.sealingCandidateV3",
            "client.sealingCandidatesV3",
            "client.receiptProofV3",
            "client.getSealingCandidatesV3",
            "client.getReceiptProofV3"
        ]
    );
    // No v3 id collides with a Cocoon id.
    let api: BTreeSet<u32> = parse_schema(COCOON_SCHEMA).iter().map(|e| e.id).collect();
    for e in &v3 {
        assert!(!api.contains(&e.id), "{} collides", e.name);
    }
    assert_eq!(
        v3[2].line,
        "proxy.queryAnswerPartV3 request_id:int256 answer:bytes flags:# progress:tokensUsed \
         final_info:flags.0?proxy.queryFinalInfo = proxy.QueryAnswer"
    );
    assert_eq!(
        v3[3].line,
        "client.queryWorkerInfoV3 request_id:int256 flags:# evidence_kind:string \
         model_hash:int256 image_hash:flags.0?int256 evidence_digest:flags.1?int256 \
         = client.QueryWorkerInfo"
    );
    assert_eq!(
        <ClientQueryWorkerInfoV3 as cocoon_tl::TlBoxed>::ID,
        constructor_id(&v3[3].line)
    );
}

macro_rules! types {
    ($($t:ty),* $(,)?) => {
        vec![$((<$t as TlConstructor>::TL_NAME, <$t as TlConstructor>::CONSTRUCTOR_ID,
                <$t as TlConstructor>::BOXED)),*]
    };
}

fn rust_types() -> Vec<(&'static str, u32, bool)> {
    types![
        TcpPing,
        TcpPong,
        TcpPacketData,
        TcpQueryAnswer,
        TcpQueryError,
        TcpQuery,
        TcpConnected,
        TcpConnect,
        HttpHeader,
        HttpRequest,
        HttpResponse,
        TokensUsed,
        TonBlockIdExt,
        RootConfigRegisteredProxy,
        RootConfigPseudo,
        RootConfigConfigV7,
        RootConfigRegisteredPublicKey,
        WorkerChangeModel,
        WorkerChangedModel,
        KeyManagerPrivateKey,
        KeyManagerPrivateKeys,
        KeyManagerGetWorkerPrivateKeys,
        KeyManagerGetProxyPrivateKeys,
        ProxyParams,
        ProxySignedPaymentData,
        ProxySignedPaymentEmpty,
        ProxyQueryAnswer,
        ProxyQueryAnswerError,
        ProxyQueryAnswerPart,
        ProxyQueryAnswerPartError,
        ProxyQueryFinalInfo,
        ProxyQueryAnswerEx,
        ProxyQueryAnswerErrorEx,
        ProxyQueryAnswerPartEx,
        ProxyQueryAnswerPartV3,
        ProxyWorkerRequestPayment,
        ProxyClientRequestPayment,
        ProxyRunQuery,
        ProxyRunQueryEx,
        ProxyCancelQueryV3,
        ClientParams,
        ClientProxyConnectionAuthShort,
        ClientProxyConnectionAuthLong,
        ClientAuthorizationWithProxySuccess,
        ClientAuthorizationWithProxyFailed,
        ClientConnectedToProxy,
        ClientQueryAnswer,
        ClientQueryAnswerError,
        ClientQueryAnswerPart,
        ClientQueryAnswerPartError,
        ClientQueryFinalInfo,
        ClientQueryAnswerEx,
        ClientQueryAnswerErrorEx,
        ClientQueryAnswerPartEx,
        ClientRefund,
        ClientRefundRejected,
        ClientWorkerType,
        ClientWorkerTypes,
        ClientWorkerInstanceV2,
        ClientWorkerTypeV2,
        ClientWorkerTypesV2,
        ClientPaymentStatus,
        ClientConnectToProxy,
        ClientAuthorizeWithProxyShort,
        ClientAuthorizeWithProxyLong,
        ClientRunQuery,
        ClientRunQueryEx,
        ClientRequestRefund,
        ClientUpdatePaymentStatus,
        ClientGetWorkerTypes,
        ClientGetWorkerTypesV2,
        ClientCancelQueryV3,
        ClientQueryWorkerInfoV3,
        ClientQueryReceiptV3,
        ClientSealingCandidateV3,
        ClientSealingCandidatesV3,
        ClientGetSealingCandidatesV3,
        ClientReceiptProofV3,
        ClientGetReceiptProofV3,
        ProxyQueryReceiptV3,
        WorkerParams,
        WorkerEnabledDisabled,
        WorkerNewCoefficient,
        WorkerConnectedToProxy,
        WorkerCompareBalanceWithProxyResult,
        WorkerExtendedCompareBalanceWithProxyResult,
        WorkerProxyHandshakeCompleted,
        WorkerPaymentStatus,
        WorkerConnectToProxy,
        WorkerCompareBalanceWithProxy,
        WorkerExtendedCompareBalanceWithProxy,
        WorkerProxyHandshakeComplete,
        WorkerUpdatePaymentStatus,
    ]
}

#[test]
fn every_message_type_carries_its_schema_id() {
    let entries = all_entries();
    let by_name: HashMap<&str, &SchemaEntry> =
        entries.iter().map(|e| (e.name.as_str(), e)).collect();
    let types = rust_types();
    for (name, id, _) in &types {
        let e = by_name
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in the schema files"));
        assert_eq!(
            *id, e.id,
            "{name}: the Rust schema attribute differs from the file"
        );
    }
    // Every constructor of the namespaces the roles use has a Rust type.
    let covered: BTreeSet<&str> = types.iter().map(|(n, _, _)| *n).collect();
    for e in &entries {
        let ns = e.name.split('.').next().unwrap_or("");
        let wanted = matches!(
            ns,
            "tcp" | "http" | "client" | "proxy" | "worker" | "tokensUsed" | "ton" | "keyManager"
        ) || e.name == "rootConfig.registeredProxy";
        if wanted {
            assert!(
                covered.contains(e.name.as_str()),
                "no Rust type for {}",
                e.name
            );
        }
    }
}

#[test]
fn any_message_lists_every_boxed_type() {
    let boxed: BTreeSet<u32> = rust_types()
        .iter()
        .filter(|(_, _, boxed)| *boxed)
        .map(|(_, id, _)| *id)
        .collect();
    let any: BTreeSet<u32> = AnyMessage::CONSTRUCTOR_IDS.iter().copied().collect();
    assert_eq!(
        any.len(),
        AnyMessage::CONSTRUCTOR_IDS.len(),
        "duplicate ids"
    );
    assert_eq!(any, boxed);
}

#[test]
fn dispatch_enums_cover_their_directions() {
    let ids = |names: &[&str]| -> BTreeSet<u32> {
        let entries = all_entries();
        names
            .iter()
            .map(|n| entries.iter().find(|e| e.name == *n).unwrap().id)
            .collect()
    };
    let set = |s: &[u32]| s.iter().copied().collect::<BTreeSet<u32>>();
    assert_eq!(
        set(TcpPacket::CONSTRUCTOR_IDS),
        ids(&[
            "tcp.ping",
            "tcp.pong",
            "tcp.packet",
            "tcp.queryAnswer",
            "tcp.queryError",
            "tcp.query",
            "tcp.connected",
            "tcp.connect"
        ])
    );
    assert_eq!(
        set(ClientToProxyMessage::CONSTRUCTOR_IDS),
        ids(&[
            "client.runQuery",
            "client.runQueryEx",
            "client.cancelQueryV3"
        ])
    );
    assert_eq!(
        set(ProxyToClientMessage::CONSTRUCTOR_IDS),
        ids(&[
            "client.queryAnswer",
            "client.queryAnswerError",
            "client.queryAnswerPart",
            "client.queryAnswerPartError",
            "client.queryAnswerEx",
            "client.queryAnswerPartEx",
            "client.queryAnswerErrorEx",
            "proxy.clientRequestPayment",
            "client.queryWorkerInfoV3",
            "client.queryReceiptV3"
        ])
    );
    assert_eq!(
        set(ProxyToWorkerMessage::CONSTRUCTOR_IDS),
        ids(&[
            "proxy.runQuery",
            "proxy.runQueryEx",
            "proxy.workerRequestPayment",
            "proxy.cancelQueryV3"
        ])
    );
    assert_eq!(
        set(WorkerToProxyMessage::CONSTRUCTOR_IDS),
        ids(&[
            "proxy.queryAnswer",
            "proxy.queryAnswerError",
            "proxy.queryAnswerPart",
            "proxy.queryAnswerPartError",
            "proxy.queryAnswerEx",
            "proxy.queryAnswerPartEx",
            "proxy.queryAnswerErrorEx",
            "proxy.queryAnswerPartV3",
            "proxy.queryReceiptV3",
            "worker.enabledDisabled",
            "worker.newCoefficient"
        ])
    );
    assert_eq!(
        set(ClientToProxyQuery::CONSTRUCTOR_IDS),
        ids(&[
            "client.connectToProxy",
            "client.authorizeWithProxyShort",
            "client.authorizeWithProxyLong",
            "client.getWorkerTypes",
            "client.getWorkerTypesV2",
            "client.updatePaymentStatus",
            "client.requestRefund",
            "client.getSealingCandidatesV3",
            "client.getReceiptProofV3"
        ])
    );
    assert_eq!(
        set(WorkerToProxyQuery::CONSTRUCTOR_IDS),
        ids(&[
            "worker.connectToProxy",
            "worker.compareBalanceWithProxy",
            "worker.extendedCompareBalanceWithProxy",
            "worker.proxyHandshakeComplete",
            "worker.updatePaymentStatus"
        ])
    );
}
