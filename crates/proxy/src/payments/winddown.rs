//! Winding down the proxy contracts of earlier root params (cocoon-notes §4.7). When the root's
//! params change, the proxy serves from a new proxy contract (its address depends on the
//! params); each earlier one is closed in order: every client contract gets a signed
//! grant-refund for its anchored usage (closing it and refunding the rest to its owner), every
//! worker contract a signed last payout, then the proxy contract a signed close request and,
//! after `proxy_delay_before_close`, a signed close-complete that sends what is left to the
//! owner.
//!
//! Progress is kept in a JSON file beside the ledger (`<ledger>.winddown.json`, written
//! atomically) so a restart resumes where it stopped. The old contracts' params are read back
//! from the old proxy contract's own storage, which is all a restarted proxy needs to rebuild
//! the old client and worker addresses. What must not live here: the serving contract's logic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cocoon_ledger::Party;
use cocoon_onchain::signed::{sign_boc, MAX_SIGNED_BOC};
use cocoon_ton::cells::decode_boc;
use cocoon_ton::chain::AccountStatus;
use cocoon_ton::contracts::{parse_proxy_storage, state, Network};
use cocoon_ton::payments::SignedKind;
use cocoon_ton::wallet::{Transfer, MAX_MESSAGES};
use cocoon_ton::TonAddress;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{split_ledger_owner, Payments};

/// Progress of one old proxy contract.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OldContract {
    /// Client owners whose grant-refund was sent.
    pub granted: BTreeSet<String>,
    /// Worker owners whose last payout was sent.
    pub paid: BTreeSet<String>,
    /// Chain time after which close-complete may be sent (0: close not requested yet).
    pub close_at: u32,
    pub done: bool,
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct WindFile {
    contracts: BTreeMap<String, OldContract>,
}

/// Largest progress file read (it lists owners of old contracts).
const MAX_FILE: u64 = 16 << 20;

pub(crate) struct WindDown {
    path: PathBuf,
    file: Mutex<WindFile>,
}

impl WindDown {
    /// Loads the progress file and adds the old contracts found in the ledger.
    pub(crate) fn load(ledger: &Path, old: &BTreeSet<TonAddress>) -> Result<Self, String> {
        let path = PathBuf::from(format!("{}.winddown.json", ledger.display()));
        let mut file = match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_FILE => {
                return Err(format!(
                    "{} is larger than {MAX_FILE} bytes",
                    path.display()
                ))
            }
            Ok(_) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            Err(_) => WindFile::default(),
        };
        for sc in old {
            file.contracts.entry(sc.to_bounceable()).or_default();
        }
        let me = Self {
            path,
            file: Mutex::new(file),
        };
        me.save()?;
        Ok(me)
    }

    /// Whether an old contract is still being wound down.
    pub(crate) fn pending(&self) -> bool {
        self.file
            .lock()
            .is_ok_and(|f| f.contracts.values().any(|c| !c.done))
    }

    /// A JSON view for the proxy status.
    pub(crate) fn status_json(&self) -> serde_json::Value {
        self.file
            .lock()
            .map(|f| serde_json::to_value(&f.contracts).unwrap_or_default())
            .unwrap_or_default()
    }

    fn save(&self) -> Result<(), String> {
        let text = {
            let f = self.file.lock().map_err(|_| "poisoned".to_string())?;
            serde_json::to_vec_pretty(&*f).map_err(|e| e.to_string())?
        };
        write_atomic(&self.path, &text).map_err(|e| format!("{}: {e}", self.path.display()))
    }

    /// One round over every old contract not done yet.
    pub(crate) async fn step(&self, p: &Payments) {
        let todo: Vec<(String, OldContract)> = match self.file.lock() {
            Ok(f) => f
                .contracts
                .iter()
                .filter(|(_, c)| !c.done)
                .map(|(k, c)| (k.clone(), c.clone()))
                .collect(),
            Err(_) => return,
        };
        for (sc_text, progress) in todo {
            let Ok(sc) = sc_text.parse::<TonAddress>() else {
                continue;
            };
            match self.step_one(p, &sc, progress).await {
                Ok(Some(next)) => {
                    if let Ok(mut f) = self.file.lock() {
                        f.contracts.insert(sc_text.clone(), next);
                    }
                    if let Err(e) = self.save() {
                        warn!(error = %e, "saving the wind-down progress failed");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(contract = %sc_text, error = %e, "winding down an old proxy contract")
                }
            }
        }
    }

    /// Advances one old contract; `Some` is its new progress.
    async fn step_one(
        &self,
        p: &Payments,
        sc: &TonAddress,
        mut progress: OldContract,
    ) -> Result<Option<OldContract>, String> {
        let st = p.chain.account_state(sc).await.map_err(|e| e.to_string())?;
        let Some(data) = st.data.filter(|_| st.status == AccountStatus::Active) else {
            info!(contract = %sc.to_bounceable(), "old proxy contract is gone; nothing to wind down");
            progress.done = true;
            return Ok(Some(progress));
        };
        let storage = parse_proxy_storage(&data).map_err(|e| e.to_string())?;
        if storage.proxy_public_key != p.public_key {
            progress.done = true;
            return Err("the old contract is another proxy key's; skipped".into());
        }
        if storage.state == state::CLOSED {
            progress.done = true;
            return Ok(Some(progress));
        }
        let old = Network {
            params: storage.params.clone(),
            proxy_public_key: p.public_key,
        };
        let snap = p.ledger.snapshot();
        let accounts: Vec<_> = snap
            .accounts
            .iter()
            .filter_map(|r| {
                let (of, owner) = split_ledger_owner(&r.key.owner)?;
                (of == *sc).then_some((r, owner))
            })
            .collect();
        if accounts
            .iter()
            .any(|(r, _)| r.committed_chain < r.committed_db)
        {
            // The last usage under the old params must be anchored before it is settled.
            return Ok(None);
        }
        let wallet = p.sender.address();
        let now = p.chain.time().await.map_err(|e| e.to_string())?;
        if progress.close_at == 0 {
            let mut transfers = Vec::new();
            let mut granted = Vec::new();
            let mut paid = Vec::new();
            for (r, owner) in &accounts {
                let key = owner.to_bounceable();
                match r.key.party {
                    Party::Client if !progress.granted.contains(&key) => {
                        let contract = old.client(owner, sc).map_err(|e| e.to_string())?;
                        let live = p
                            .chain
                            .account_state(&contract.address)
                            .await
                            .is_ok_and(|a| a.status == AccountStatus::Active);
                        if live {
                            let boc = sign_boc(
                                &p.signer,
                                SignedKind::GrantRefund,
                                r.committed_chain,
                                &contract.address,
                                &wallet,
                            )
                            .map_err(|e| e.to_string())?;
                            transfers.push(transfer(
                                &boc,
                                contract.address,
                                p.settings.attach,
                                None,
                            )?);
                        }
                        granted.push(key);
                    }
                    Party::Worker if !progress.paid.contains(&key) => {
                        if r.committed_chain > 0 {
                            let contract = old.worker(owner, sc).map_err(|e| e.to_string())?;
                            let boc = sign_boc(
                                &p.signer,
                                SignedKind::LastPayout,
                                r.committed_chain,
                                &contract.address,
                                &wallet,
                            )
                            .map_err(|e| e.to_string())?;
                            let init = contract.state_init_cell().map_err(|e| e.to_string())?;
                            transfers.push(transfer(
                                &boc,
                                contract.address,
                                p.settings.attach,
                                Some(init),
                            )?);
                        }
                        paid.push(key);
                    }
                    _ => {}
                }
            }
            if !transfers.is_empty() || !granted.is_empty() || !paid.is_empty() {
                for chunk in transfers.chunks(MAX_MESSAGES) {
                    p.sender
                        .send(chunk.to_vec())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                info!(
                    contract = %sc.to_bounceable(),
                    clients = granted.len(),
                    workers = paid.len(),
                    "old proxy contract: refunds granted and last payouts sent"
                );
                progress.granted.extend(granted);
                progress.paid.extend(paid);
                return Ok(Some(progress));
            }
            let boc = sign_boc(&p.signer, SignedKind::ProxyClose, 0, sc, &wallet)
                .map_err(|e| e.to_string())?;
            p.sender
                .send(vec![transfer(&boc, *sc, p.settings.attach, None)?])
                .await
                .map_err(|e| e.to_string())?;
            progress.close_at = now
                .saturating_add(storage.params.proxy_delay_before_close)
                .saturating_add(1);
            info!(contract = %sc.to_bounceable(), close_at = progress.close_at, "old proxy contract: closing");
            return Ok(Some(progress));
        }
        if now < progress.close_at.max(storage.unlock_ts) {
            return Ok(None);
        }
        let boc = sign_boc(&p.signer, SignedKind::ProxyCloseComplete, 0, sc, &wallet)
            .map_err(|e| e.to_string())?;
        p.sender
            .send(vec![transfer(&boc, *sc, p.settings.attach, None)?])
            .await
            .map_err(|e| e.to_string())?;
        info!(contract = %sc.to_bounceable(), "old proxy contract: close completed, funds sent to the owner");
        progress.done = true;
        Ok(Some(progress))
    }
}

fn transfer(
    boc: &[u8],
    dest: TonAddress,
    value: u128,
    state_init: Option<cocoon_ton::Cell>,
) -> Result<Transfer, String> {
    let body = decode_boc(boc, MAX_SIGNED_BOC).map_err(|e| e.to_string())?;
    Ok(Transfer {
        dest,
        value,
        bounce: state_init.is_none(),
        body: Some(body),
        state_init,
    })
}

/// Writes `bytes` to `path` atomically: a temp file, fsync, rename, fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_survives_a_reload_and_new_old_contracts_are_added() {
        let dir = std::env::temp_dir().join(format!("winddown-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ledger = dir.join("l.sqlite");
        let a: TonAddress = format!("0:{}", "aa".repeat(32)).parse().unwrap();
        let b: TonAddress = format!("0:{}", "bb".repeat(32)).parse().unwrap();
        let w = WindDown::load(&ledger, &BTreeSet::from([a])).unwrap();
        assert!(w.pending());
        {
            let mut f = w.file.lock().unwrap();
            let c = f.contracts.get_mut(&a.to_bounceable()).unwrap();
            c.granted.insert("x".into());
            c.done = true;
        }
        w.save().unwrap();
        assert!(!w.pending());
        let w2 = WindDown::load(&ledger, &BTreeSet::from([b])).unwrap();
        let f = w2.file.lock().unwrap();
        assert!(f.contracts[&a.to_bounceable()].done);
        assert!(f.contracts[&a.to_bounceable()].granted.contains("x"));
        assert!(!f.contracts[&b.to_bounceable()].done);
        drop(f);
        // A corrupt file is an error, not an empty start.
        std::fs::write(dir.join("l.sqlite.winddown.json"), b"{not json").unwrap();
        assert!(WindDown::load(&ledger, &BTreeSet::new()).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
