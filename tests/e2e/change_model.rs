//! `worker.changeModel` (upstream 9060ce5) end to end: the proxy's operator switches a worker's
//! model with `cocoon proxy change-model`; the worker runs its hook and the proxy lists and
//! routes the new model; a failing hook changes nothing. Also the worker's machine description
//! (`worker.params` bit 2, protocol 4) as the proxy's stats show it.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use cocoon_testkit::{post_chat, TempDir};

use crate::harness::Net;

/// `cocoon proxy change-model` against the network's proxy.
fn change_model(net: &Net, worker: u64, model: &str) -> Output {
    let cfg = net.proxy_config();
    std::process::Command::new(env!("CARGO_BIN_EXE_cocoon"))
        .args(["proxy", "change-model", "--config"])
        .arg(&cfg)
        .args(["--worker", &worker.to_string(), "--model", model])
        .output()
        .expect("run cocoon")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_switches_a_workers_model_and_a_failing_hook_changes_nothing() {
    let hooks = TempDir::new("change-model-hook");
    let hook = hooks.path().join("switch-model.sh");
    let switched = hooks.path().join("switched");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n[ \"$1\" = fail ] && exit 3\necho \"$1\" >> '{}'\n",
            switched.display()
        ),
    )
    .expect("write hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let net = Net::builder()
        .edit_proxy(|p| p.admin_token = "change-model-admin".into())
        .edit_worker(move |w| {
            w.change_model_hook = Some(hook.clone());
            w.machine_description_json = r#"{"gpu":"none","test":true}"#.into();
        })
        .start("change-model")
        .await;
    let stats = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    let w = &stats["workers"][0];
    // A machine description raises the worker's minimum to 4; both sides speak our extensions.
    assert_eq!(w["proto"], 4, "{stats}");
    assert_eq!(w["extensions"], true);
    assert_eq!(w["machine_description"]["test"], true, "{stats}");
    let conn = w["conn"].as_u64().expect("conn");

    // A failing hook: refused with the worker's reason, the worker keeps its model.
    let out = change_model(&net, conn, "fail");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("model change hook failed"), "{err}");
    let stats = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    assert_eq!(stats["workers"][0]["model"], net.opts.model.as_str());

    // A working hook: the proxy lists the new model at once and routes it there.
    let out = change_model(&net, conn, "other-model@rev:1");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&switched).expect("hook ran").trim(),
        "other-model@rev:1"
    );
    let stats = net.json(&format!("{}/jsonstats", net.proxy_stats)).await;
    assert_eq!(stats["workers"][0]["model"], "other-model@rev:1", "{stats}");
    let http = reqwest::Client::new();
    let body = |model: &str| serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let served = post_chat(&http, &net.base, &body("other-model")).await;
    assert_eq!(served.status(), 200, "the new model is served");
    let old = post_chat(&http, &net.base, &body(&net.opts.model)).await;
    assert_eq!(old.status(), 404, "the old model is gone");

    // An unknown worker connection: refused by the proxy.
    let out = change_model(&net, conn + 1000, "x");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no worker is registered"));
}
