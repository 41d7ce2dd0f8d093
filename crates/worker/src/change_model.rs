//! `worker.changeModel` (upstream 9060ce5): a proxy's operator asks this worker to serve another
//! model. The worker runs its configured hook (`change_model_hook`, given the new model name as
//! its only argument, bounded by `change_model_timeout`), and on success takes the new name as
//! its model: the asking proxy re-registers it on `worker.changedModel`, and the worker's other
//! proxy links are closed so that they reconnect and register the new model in their handshake.
//! Without a hook, or when the hook fails, the answer is an error and nothing changes.
//!
//! Only the hook's exit status is looked at; its output is not logged (an operator's script may
//! print anything). Running engines are not touched here: switching the engine is the hook's job.

use std::process::Stdio;
use std::sync::Arc;

use cocoon_node::errors;
use cocoon_proto::messages::{encode, WorkerChangedModel};
use cocoon_proto::session::IncomingQuery;
use tracing::{info, warn};

use crate::Shared;

/// Longest model name accepted (upstream's names are `name@commit:hash`, well below this).
pub const MAX_MODEL_NAME_BYTES: usize = 256;

/// Why a model change was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeRefused {
    #[error("cannot change model: no change_model_hook is configured")]
    NoHook,
    #[error("cannot change model: the model name is empty, too long or not printable")]
    BadName,
    #[error("cannot change model: model change hook failed")]
    HookFailed,
    #[error("cannot change model: model change hook did not finish in time")]
    HookTimedOut,
    #[error("cannot change model: another model change is running")]
    Busy,
}

/// Whether `name` may be handed to the hook and advertised: non-empty, bounded, printable ASCII
/// without spaces (it becomes a process argument and a TL string other proxies will see).
pub fn valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_MODEL_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_graphic())
        && !name.starts_with('-')
}

/// Runs the hook for `new_model` and, on success, makes it this worker's model.
pub(crate) async fn change_model(shared: &Shared, new_model: &str) -> Result<(), ChangeRefused> {
    let Some(hook) = shared.cfg.change_model_hook.as_ref() else {
        return Err(ChangeRefused::NoHook);
    };
    if !valid_model_name(new_model) {
        return Err(ChangeRefused::BadName);
    }
    // One change at a time: two hooks racing would leave the engine and the name disagreeing.
    let Ok(_running) = shared.changing_model.try_lock() else {
        return Err(ChangeRefused::Busy);
    };
    let started = std::time::Instant::now();
    let child = tokio::process::Command::new(hook)
        .arg(new_model)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            warn!(hook = %hook.display(), error = %e, "cannot start the model change hook");
            return Err(ChangeRefused::HookFailed);
        }
    };
    let status = match tokio::time::timeout(shared.cfg.change_model_timeout, child.wait()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            warn!(error = %e, "waiting for the model change hook failed");
            return Err(ChangeRefused::HookFailed);
        }
        // Dropping `child` kills it (kill_on_drop).
        Err(_) => return Err(ChangeRefused::HookTimedOut),
    };
    if !status.success() {
        warn!(status = %status, "model change hook failed");
        return Err(ChangeRefused::HookFailed);
    }
    let old = shared.set_model(new_model.to_string());
    info!(
        from = %old,
        to = %new_model,
        ms = started.elapsed().as_millis() as u64,
        "model changed"
    );
    Ok(())
}

/// Answers one `worker.changeModel` query from the proxy on link `link_id`.
pub(crate) async fn answer(
    shared: Arc<Shared>,
    link_id: u64,
    query: IncomingQuery,
    new_model: String,
) {
    match change_model(&shared, &new_model).await {
        Ok(()) => {
            query.answer(encode(&WorkerChangedModel)).await;
            // The other proxies still list the old model: make them register the new one.
            shared.close_links_except(link_id);
        }
        Err(e) => query.error(errors::ERROR, e.to_string()).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_bounded_and_printable() {
        assert!(valid_model_name("Qwen/Qwen3-8B@abc123def456:0000"));
        assert!(!valid_model_name(""));
        assert!(!valid_model_name("a b"));
        assert!(!valid_model_name("-rf"));
        assert!(!valid_model_name("new\nline"));
        assert!(!valid_model_name(&"x".repeat(MAX_MODEL_NAME_BYTES + 1)));
    }
}
