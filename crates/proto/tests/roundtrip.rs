//! Property tests over the message types: decode(encode(v)) == v with `encoded_len` exact, for
//! generated values of the main messages (through their dispatch enums too), and decoding
//! arbitrary or corrupted bytes as any dispatch enum never panics.

// Test helpers outside #[test] fns unwrap too; a failure is a test failure.
#![allow(clippy::unwrap_used)]

use std::fmt::Debug;

use bytes::Bytes;
use cocoon_proto::messages::*;
use cocoon_tl::{from_bytes, to_bytes, TlRead, TlWrite};
use proptest::prelude::*;

fn roundtrip<T: TlRead + TlWrite + PartialEq + Debug>(v: &T) -> Result<(), TestCaseError> {
    let b = to_bytes(v);
    prop_assert_eq!(b.len(), v.encoded_len());
    prop_assert_eq!(b.len() % 4, 0);
    let back: T = from_bytes(&Bytes::from(b)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, v);
    Ok(())
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn time() -> impl Strategy<Value = f64> {
    -1e12f64..1e12
}

/// Bits 0 and 1 are owned by optional fields in every flagged Cocoon type; keep the rest.
/// Flag bits no field uses (bits 0..2 carry fields in the messages generated here).
fn foreign(flags: u32) -> u32 {
    flags & !0b111
}

fn bit(present: bool, b: u32) -> u32 {
    if present {
        1 << b
    } else {
        0
    }
}

fn tokens() -> impl Strategy<Value = TokensUsed> {
    any::<[i64; 5]>().prop_map(|t| TokensUsed {
        prompt_tokens_used: t[0],
        cached_tokens_used: t[1],
        completion_tokens_used: t[2],
        reasoning_tokens_used: t[3],
        total_tokens_used: t[4],
    })
}

fn signed_payment() -> impl Strategy<Value = ProxySignedPayment> {
    prop_oneof![
        Just(ProxySignedPayment::Empty(ProxySignedPaymentEmpty)),
        bytes(300).prop_map(|data| ProxySignedPayment::Signed(ProxySignedPaymentData { data })),
    ]
}

fn header() -> impl Strategy<Value = HttpHeader> {
    (text(), text()).prop_map(|(name, value)| HttpHeader { name, value })
}

fn http_request() -> impl Strategy<Value = HttpRequest> {
    (
        text(),
        text(),
        text(),
        proptest::collection::vec(header(), 0..6),
        bytes(600),
    )
        .prop_map(
            |(method, url, http_version, headers, payload)| HttpRequest {
                method,
                url,
                http_version,
                headers,
                payload,
            },
        )
}

fn http_response() -> impl Strategy<Value = HttpResponse> {
    (
        text(),
        any::<i32>(),
        text(),
        proptest::collection::vec(header(), 0..6),
        bytes(600),
    )
        .prop_map(
            |(http_version, status_code, reason, headers, payload)| HttpResponse {
                http_version,
                status_code,
                reason,
                headers,
                payload,
            },
        )
}

fn proxy_final_info() -> impl Strategy<Value = ProxyQueryFinalInfo> {
    (
        any::<u32>(),
        tokens(),
        proptest::option::of(text()),
        proptest::option::of((time(), time())),
    )
        .prop_map(
            |(flags, tokens_used, worker_debug, times)| ProxyQueryFinalInfo {
                flags: foreign(flags) | bit(worker_debug.is_some(), 0) | bit(times.is_some(), 1),
                tokens_used,
                worker_debug,
                worker_start_time: times.map(|t| t.0),
                worker_end_time: times.map(|t| t.1),
            },
        )
}

fn client_final_info() -> impl Strategy<Value = ClientQueryFinalInfo> {
    (
        any::<u32>(),
        tokens(),
        proptest::option::of((text(), text())),
        proptest::option::of((time(), time(), time(), time())),
    )
        .prop_map(|(flags, tokens_used, debug, times)| ClientQueryFinalInfo {
            flags: foreign(flags) | bit(debug.is_some(), 0) | bit(times.is_some(), 1),
            tokens_used,
            worker_debug: debug.clone().map(|d| d.0),
            proxy_debug: debug.map(|d| d.1),
            proxy_start_time: times.map(|t| t.0),
            proxy_end_time: times.map(|t| t.1),
            worker_start_time: times.map(|t| t.2),
            worker_end_time: times.map(|t| t.3),
        })
}

type Ex<F> = ([u8; 32], Bytes, u32, Option<F>);

fn proxy_ex() -> impl Strategy<Value = Ex<ProxyQueryFinalInfo>> {
    (
        any::<[u8; 32]>(),
        bytes(800),
        any::<u32>(),
        proptest::option::of(proxy_final_info()),
    )
}

fn client_ex() -> impl Strategy<Value = Ex<ClientQueryFinalInfo>> {
    (
        any::<[u8; 32]>(),
        bytes(800),
        any::<u32>(),
        proptest::option::of(client_final_info()),
    )
}

fn worker_to_proxy() -> impl Strategy<Value = WorkerToProxyMessage> {
    prop_oneof![
        proxy_ex().prop_map(|(request_id, answer, flags, final_info)| {
            WorkerToProxyMessage::QueryAnswerEx(ProxyQueryAnswerEx {
                request_id,
                answer,
                flags: foreign(flags) | bit(final_info.is_some(), 0),
                final_info,
            })
        }),
        proxy_ex().prop_map(|(request_id, answer, flags, final_info)| {
            WorkerToProxyMessage::QueryAnswerPartEx(ProxyQueryAnswerPartEx {
                request_id,
                answer,
                flags: foreign(flags) | bit(final_info.is_some(), 0),
                final_info,
            })
        }),
        (proxy_ex(), any::<i32>(), text(), tokens()).prop_map(
            |((request_id, answer, flags, final_info), code, error, progress)| {
                if code % 2 == 0 {
                    WorkerToProxyMessage::QueryAnswerErrorEx(ProxyQueryAnswerErrorEx {
                        request_id,
                        error_code: code,
                        error,
                        flags: foreign(flags) | bit(final_info.is_some(), 0),
                        final_info,
                    })
                } else {
                    WorkerToProxyMessage::QueryAnswerPartV3(ProxyQueryAnswerPartV3 {
                        request_id,
                        answer,
                        flags: foreign(flags) | bit(final_info.is_some(), 0),
                        progress,
                        final_info,
                    })
                }
            }
        ),
        (bytes(100), any::<bool>(), any::<[u8; 32]>(), tokens()).prop_map(
            |(answer, is_completed, request_id, tokens_used)| {
                WorkerToProxyMessage::QueryAnswer(ProxyQueryAnswer {
                    answer,
                    is_completed,
                    request_id,
                    tokens_used,
                })
            }
        ),
        any::<i32>().prop_map(|disabled| WorkerToProxyMessage::EnabledDisabled(
            WorkerEnabledDisabled { disabled }
        )),
        any::<i32>().prop_map(|new_coefficient| WorkerToProxyMessage::NewCoefficient(
            WorkerNewCoefficient { new_coefficient }
        )),
    ]
}

fn proxy_to_client() -> impl Strategy<Value = ProxyToClientMessage> {
    prop_oneof![
        (
            any::<[u8; 32]>(),
            "[a-z-]{0,20}",
            any::<[u8; 32]>(),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(any::<[u8; 32]>()),
        )
            .prop_map(|(request_id, kind, model_hash, image_hash, digest)| {
                ProxyToClientMessage::QueryWorkerInfoV3(ClientQueryWorkerInfoV3::new(
                    request_id, kind, model_hash, image_hash, digest,
                ))
            }),
        client_ex().prop_map(|(request_id, answer, flags, final_info)| {
            ProxyToClientMessage::QueryAnswerEx(ClientQueryAnswerEx {
                request_id,
                answer,
                flags: foreign(flags) | bit(final_info.is_some(), 0),
                final_info,
            })
        }),
        client_ex().prop_map(|(request_id, answer, flags, final_info)| {
            ProxyToClientMessage::QueryAnswerPartEx(ClientQueryAnswerPartEx {
                request_id,
                answer,
                flags: foreign(flags) | bit(final_info.is_some(), 0),
                final_info,
            })
        }),
        (client_ex(), any::<i32>(), text()).prop_map(
            |((request_id, _, flags, final_info), error_code, error)| {
                ProxyToClientMessage::QueryAnswerErrorEx(ClientQueryAnswerErrorEx {
                    request_id,
                    error_code,
                    error,
                    flags: foreign(flags) | bit(final_info.is_some(), 0),
                    final_info,
                })
            }
        ),
        (any::<i32>(), text(), any::<[u8; 32]>(), tokens()).prop_map(
            |(error_code, error, request_id, request_tokens_used)| {
                ProxyToClientMessage::QueryAnswerError(ClientQueryAnswerError {
                    error_code,
                    error,
                    request_id,
                    request_tokens_used,
                })
            }
        ),
        (any::<[u8; 32]>(), signed_payment(), any::<[i64; 3]>()).prop_map(
            |(request_id, signed_payment, t)| {
                ProxyToClientMessage::ClientRequestPayment(ProxyClientRequestPayment {
                    request_id,
                    signed_payment,
                    db_tokens: t[0],
                    max_tokens: t[1],
                    request_tokens: t[2],
                })
            }
        ),
    ]
}

fn client_to_proxy() -> impl Strategy<Value = ClientToProxyMessage> {
    prop_oneof![
        (
            text(),
            http_request(),
            any::<[i32; 3]>(),
            time(),
            any::<[u8; 32]>(),
            any::<u32>(),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<[u8; 32]>()),
        )
            .prop_map(
                |(model_name, req, n, timeout, request_id, flags, enable_debug, public_key)| {
                    ClientToProxyMessage::RunQueryEx(ClientRunQueryEx {
                        model_name,
                        query: Bytes::from(to_bytes(&req)),
                        max_coefficient: n[0],
                        max_tokens: n[1],
                        timeout,
                        request_id,
                        min_config_version: n[2],
                        flags: foreign(flags)
                            | bit(enable_debug.is_some(), 0)
                            | bit(public_key.is_some(), 1),
                        enable_debug,
                        public_key,
                    })
                }
            ),
        any::<[u8; 32]>().prop_map(|request_id| ClientToProxyMessage::CancelQueryV3(
            ClientCancelQueryV3 { request_id }
        )),
    ]
}

fn proxy_to_worker() -> impl Strategy<Value = ProxyToWorkerMessage> {
    prop_oneof![
        (
            http_request(),
            signed_payment(),
            any::<i64>(),
            time(),
            any::<[u8; 32]>(),
            any::<u32>(),
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<[u8; 32]>()),
        )
            .prop_map(
                |(
                    req,
                    signed_payment,
                    coefficient,
                    timeout,
                    request_id,
                    flags,
                    enable_debug,
                    private_key,
                )| {
                    ProxyToWorkerMessage::RunQueryEx(ProxyRunQueryEx {
                        query: Bytes::from(to_bytes(&req)),
                        signed_payment,
                        coefficient,
                        timeout,
                        request_id,
                        flags: foreign(flags)
                            | bit(enable_debug.is_some(), 0)
                            | bit(private_key.is_some(), 1),
                        enable_debug,
                        private_key,
                    })
                }
            ),
        (
            any::<[u8; 32]>(),
            signed_payment(),
            any::<[i64; 3]>(),
            text()
        )
            .prop_map(|(request_id, signed_payment, t, request_client_owner)| {
                ProxyToWorkerMessage::WorkerRequestPayment(ProxyWorkerRequestPayment {
                    request_id,
                    signed_payment,
                    db_tokens: t[0],
                    max_tokens: t[1],
                    request_tokens: t[2],
                    request_client_owner,
                })
            }),
        any::<[u8; 32]>().prop_map(|request_id| ProxyToWorkerMessage::CancelQueryV3(
            ProxyCancelQueryV3 { request_id }
        )),
    ]
}

fn proxy_params() -> impl Strategy<Value = ProxyParams> {
    (
        any::<u32>(),
        any::<[u8; 32]>(),
        text(),
        text(),
        proptest::option::of(any::<bool>()),
        proptest::option::of(any::<i32>()),
    )
        .prop_map(
            |(flags, key, owner, sc, is_test, proto_version)| ProxyParams {
                flags: foreign(flags) | bit(is_test.is_some(), 0) | bit(proto_version.is_some(), 1),
                proxy_public_key: key,
                proxy_owner_address: owner,
                proxy_sc_address: sc,
                is_test,
                proto_version,
            },
        )
}

fn worker_params() -> impl Strategy<Value = WorkerParams> {
    (
        any::<u32>(),
        text(),
        text(),
        any::<i32>(),
        proptest::option::of((any::<bool>(), any::<i32>(), any::<i32>())),
        proptest::option::of((any::<i32>(), any::<i32>())),
        proptest::option::of(text()),
    )
        .prop_map(
            |(flags, owner, model, coefficient, b0, b1, b2)| WorkerParams {
                flags: foreign(flags)
                    | bit(b0.is_some(), 0)
                    | bit(b1.is_some(), 1)
                    | bit(b2.is_some(), 2),
                worker_owner_address: owner,
                model,
                coefficient,
                is_test: b0.map(|b| b.0),
                proxy_cnt: b0.map(|b| b.1),
                max_active_requests: b0.map(|b| b.2),
                min_proto_version: b1.map(|b| b.0),
                max_proto_version: b1.map(|b| b.1),
                machine_description_json: b2,
            },
        )
}

fn client_params() -> impl Strategy<Value = ClientParams> {
    (
        any::<u32>(),
        text(),
        proptest::option::of(any::<bool>()),
        proptest::option::of((any::<i32>(), any::<i32>())),
    )
        .prop_map(|(flags, owner, is_test, range)| ClientParams {
            flags: foreign(flags) | bit(is_test.is_some(), 0) | bit(range.is_some(), 1),
            client_owner_address: owner,
            is_test,
            min_proto_version: range.map(|r| r.0),
            max_proto_version: range.map(|r| r.1),
        })
}

fn handshake() -> impl Strategy<Value = AnyMessage> {
    let auth = prop_oneof![
        (any::<[u8; 32]>(), any::<i64>()).prop_map(|(secret_hash, nonce)| {
            ClientProxyConnectionAuth::Short(ClientProxyConnectionAuthShort { secret_hash, nonce })
        }),
        any::<i64>().prop_map(|nonce| ClientProxyConnectionAuth::Long(
            ClientProxyConnectionAuthLong { nonce }
        )),
    ];
    prop_oneof![
        (client_params(), any::<i32>()).prop_map(|(params, min_config_version)| {
            AnyMessage::ClientConnectToProxy(ClientConnectToProxy {
                params,
                min_config_version,
            })
        }),
        (proxy_params(), text(), auth, signed_payment()).prop_map(
            |(params, client_sc_address, auth, signed_payment)| {
                AnyMessage::ClientConnectedToProxy(ClientConnectedToProxy {
                    params,
                    client_sc_address,
                    auth,
                    signed_payment,
                })
            }
        ),
        worker_params()
            .prop_map(|params| AnyMessage::WorkerConnectToProxy(WorkerConnectToProxy { params })),
        (proxy_params(), text()).prop_map(|(params, worker_sc_address)| {
            AnyMessage::WorkerConnectedToProxy(WorkerConnectedToProxy {
                params,
                worker_sc_address,
            })
        }),
        (signed_payment(), any::<[i64; 2]>(), any::<i32>()).prop_map(|(sp, t, error_code)| {
            AnyMessage::WorkerCompareBalanceWithProxyResult(WorkerCompareBalanceWithProxyResult {
                signed_payment: sp,
                tokens_committed_to_db: t[0],
                max_tokens: t[1],
                error_code,
            })
        }),
        proptest::collection::vec(
            (text(), proptest::collection::vec(any::<[i32; 4]>(), 0..4)),
            0..4
        )
        .prop_map(|types| {
            AnyMessage::ClientWorkerTypesV2(ClientWorkerTypesV2 {
                types: types
                    .into_iter()
                    .map(|(name, ws)| ClientWorkerTypeV2 {
                        name,
                        workers: ws
                            .into_iter()
                            .map(|w| ClientWorkerInstanceV2 {
                                flags: w[0] as u32,
                                coefficient: w[1],
                                active_requests: w[2],
                                max_active_requests: w[3],
                            })
                            .collect(),
                    })
                    .collect(),
            })
        }),
        http_request().prop_map(AnyMessage::HttpRequest),
        http_response().prop_map(AnyMessage::HttpResponse),
    ]
}

/// Every dispatch enum (and the tcp layer) over `data`; only "does not panic" is asserted.
fn decode_everything(data: &Bytes) {
    let _ = from_bytes::<TcpPacket>(data);
    let _ = from_bytes::<ClientToProxyMessage>(data);
    let _ = from_bytes::<ProxyToClientMessage>(data);
    let _ = from_bytes::<ProxyToWorkerMessage>(data);
    let _ = from_bytes::<WorkerToProxyMessage>(data);
    let _ = from_bytes::<ClientToProxyQuery>(data);
    let _ = from_bytes::<WorkerToProxyQuery>(data);
    let _ = from_bytes::<AnyMessage>(data);
    let _ = from_bytes::<HttpRequest>(data);
    let _ = from_bytes::<HttpResponse>(data);
}

/// Arbitrary bytes that start with a real constructor id, so decoding gets past dispatch.
fn with_known_id() -> impl Strategy<Value = Bytes> {
    use cocoon_tl::TlEnum;
    (
        proptest::sample::select(AnyMessage::CONSTRUCTOR_IDS.to_vec()),
        proptest::collection::vec(any::<u8>(), 0..3000),
    )
        .prop_map(|(id, rest)| {
            let mut v = id.to_le_bytes().to_vec();
            v.extend_from_slice(&rest);
            Bytes::from(v)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn worker_to_proxy_roundtrip(m in worker_to_proxy()) {
        roundtrip(&m)?;
    }

    #[test]
    fn proxy_to_client_roundtrip(m in proxy_to_client()) {
        roundtrip(&m)?;
    }

    #[test]
    fn client_to_proxy_roundtrip(m in client_to_proxy()) {
        roundtrip(&m)?;
        if let ClientToProxyMessage::RunQueryEx(q) = &m {
            // The nested http.request decodes too.
            prop_assert!(from_bytes::<HttpRequest>(&q.query).is_ok());
        }
    }

    #[test]
    fn proxy_to_worker_roundtrip(m in proxy_to_worker()) {
        roundtrip(&m)?;
    }

    #[test]
    fn handshake_roundtrip(m in handshake()) {
        roundtrip(&m)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        decode_everything(&Bytes::from(data));
    }

    #[test]
    fn known_id_then_garbage_never_panics(data in with_known_id()) {
        decode_everything(&data);
    }

    #[test]
    fn corrupted_messages_never_panic(
        m in worker_to_proxy(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut b = to_bytes(&m);
        for (pos, x) in flips {
            let n = b.len();
            b[pos % n] ^= x;
        }
        b.truncate(cut % (b.len() + 1));
        decode_everything(&Bytes::from(b));
    }
}

#[test]
fn debug_never_shows_payloads() {
    let q = ClientRunQueryEx {
        model_name: "m".into(),
        query: Bytes::from_static(b"secret prompt"),
        max_coefficient: 1,
        max_tokens: 2,
        timeout: 3.0,
        request_id: [0; 32],
        min_config_version: 4,
        flags: 2,
        enable_debug: None,
        public_key: Some([7; 32]),
    };
    let text = format!("{:?}", ClientToProxyMessage::RunQueryEx(q));
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains("<13 bytes>"), "{text}");
    let auth = ClientAuthorizeWithProxyShort {
        data: Bytes::from_static(b"hunter2"),
    };
    assert!(!format!("{auth:?}").contains("hunter2"));
    let h = HttpHeader {
        name: "Authorization".into(),
        value: "Bearer abc".into(),
    };
    let text = format!("{h:?}");
    assert!(
        text.contains("Authorization") && !text.contains("abc"),
        "{text}"
    );
}

#[test]
fn worker_info_flags_follow_the_optional_fields() {
    let m = ClientQueryWorkerInfoV3::new([1; 32], "tdx".into(), [2; 32], Some([3; 32]), None);
    assert_eq!(m.flags, 0b01);
    let m = ClientQueryWorkerInfoV3::new([1; 32], "none".into(), [2; 32], None, Some([4; 32]));
    assert_eq!(m.flags, 0b10);
    let b = to_bytes(&ProxyToClientMessage::QueryWorkerInfoV3(m.clone()));
    // id, request_id, flags, "none" (1 + 4 bytes, padded to 8), model_hash, evidence_digest.
    assert_eq!(b.len(), 4 + 32 + 4 + 8 + 32 + 32);
    let back: ProxyToClientMessage = from_bytes(&Bytes::from(b)).unwrap();
    assert_eq!(back, ProxyToClientMessage::QueryWorkerInfoV3(m));
}
