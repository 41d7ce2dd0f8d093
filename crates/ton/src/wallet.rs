//! Standard TON wallet (v4r2) for owners and relayers: keys from a 24-word TON mnemonic, the wallet
//! address, and signed external transfer messages. tonlib-core builds and signs the wallet parts; message
//! bodies and StateInits are our tycho cells, converted through BOC bytes (cells::to_tonlib).
//!
//! What must not live here: key storage on disk (the CLI decides) or any network call. Mnemonics and
//! secret keys are never printed by `Debug`.

use tonlib_core::wallet::mnemonic::{Mnemonic, WORDLIST_EN_SET};
use tonlib_core::wallet::ton_wallet::TonWallet;
use tonlib_core::wallet::wallet_version::WalletVersion;
use tycho_types::cell::{Cell, CellBuilder};
use tycho_types::num::Tokens;

use crate::address::TonAddress;
use crate::cells::{self, store_addr, CellError};
use crate::chain::StackEntry;

/// Wallet errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalletError {
    #[error("mnemonic: {0}")]
    Mnemonic(String),
    #[error("wallet: {0}")]
    Wallet(String),
    #[error("cell: {0}")]
    Cell(#[from] CellError),
    #[error("too many messages in one transfer (at most 4)")]
    TooManyMessages,
}

/// Most internal messages one v4 external message can carry.
pub const MAX_MESSAGES: usize = 4;

/// One outgoing internal message of a transfer.
#[derive(Clone, Debug)]
pub struct Transfer {
    pub dest: TonAddress,
    /// nanoTON.
    pub value: u128,
    pub bounce: bool,
    pub body: Option<Cell>,
    /// StateInit cell to deploy `dest`.
    pub state_init: Option<Cell>,
}

/// Builds an internal message cell (`int_msg_info` with zero src, fees and lt, as wallets send them).
pub fn internal_message(t: &Transfer) -> Result<Cell, CellError> {
    let mut b = CellBuilder::new();
    b.store_bit_zero()?; // int_msg_info$0
    b.store_bit_one()?; // ihr_disabled
    b.store_bit(t.bounce)?;
    b.store_bit_zero()?; // bounced
    b.store_small_uint(0, 2)?; // src: addr_none (the wallet fills it)
    store_addr(&mut b, &t.dest)?;
    cells::store(&mut b, &Tokens::new(t.value))?;
    b.store_bit_zero()?; // no extra currencies
    cells::store(&mut b, &Tokens::ZERO)?; // ihr_fee
    cells::store(&mut b, &Tokens::ZERO)?; // fwd_fee
    b.store_u64(0)?; // created_lt
    b.store_u32(0)?; // created_at
    match &t.state_init {
        Some(si) => {
            b.store_bit_one()?;
            b.store_bit_one()?; // as a ref
            b.store_reference(si.clone())?;
        }
        None => b.store_bit_zero()?,
    }
    match &t.body {
        Some(body) => {
            b.store_bit_one()?; // as a ref
            b.store_reference(body.clone())?;
        }
        None => b.store_bit_zero()?,
    }
    Ok(b.build()?)
}

/// A 24-word mnemonic. `Debug` hides the words.
#[derive(Clone)]
pub struct Phrase(String);

impl std::fmt::Debug for Phrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Phrase(***)")
    }
}

impl Phrase {
    /// Generates a fresh passwordless TON mnemonic (random words until the TON seed check passes).
    pub fn generate() -> Result<Self, WalletError> {
        use rand::seq::IndexedRandom as _;
        let words: Vec<&'static str> = WORDLIST_EN_SET.keys().copied().collect();
        let mut rng = rand::rng();
        // About 1 in 256 random phrases passes; bound the loop anyway.
        for _ in 0..100_000 {
            let pick: Vec<&str> = (0..24)
                .filter_map(|_| words.choose(&mut rng).copied())
                .collect();
            if Mnemonic::new(pick.clone(), &None).is_ok() {
                return Ok(Self(pick.join(" ")));
            }
        }
        Err(WalletError::Mnemonic(
            "could not generate a mnemonic".into(),
        ))
    }

    /// Validates and wraps user text.
    pub fn parse(text: &str) -> Result<Self, WalletError> {
        Mnemonic::from_str(text, &None).map_err(|e| WalletError::Mnemonic(e.to_string()))?;
        let words: Vec<&str> = text.split_whitespace().collect();
        Ok(Self(words.join(" ").to_lowercase()))
    }

    /// The words (for the user to write down; never log them).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A wallet v4r2 (workchain 0, default wallet id).
#[derive(Clone)]
pub struct Wallet {
    inner: TonWallet,
    address: TonAddress,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wallet({})", self.address)
    }
}

impl Wallet {
    /// Derives the keys (PBKDF2, ~100k rounds: call from `spawn_blocking` on a runtime).
    pub fn from_phrase(phrase: &Phrase) -> Result<Self, WalletError> {
        let m = Mnemonic::from_str(phrase.expose(), &None)
            .map_err(|e| WalletError::Mnemonic(e.to_string()))?;
        let kp = m
            .to_key_pair()
            .map_err(|e| WalletError::Mnemonic(e.to_string()))?;
        let inner = TonWallet::new(WalletVersion::V4R2, kp)
            .map_err(|e| WalletError::Wallet(e.to_string()))?;
        let address = inner
            .address
            .to_hex()
            .parse()
            .map_err(|e: crate::address::AddressError| WalletError::Wallet(e.to_string()))?;
        Ok(Self { inner, address })
    }

    /// The wallet's address.
    pub fn address(&self) -> TonAddress {
        self.address
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        let pk = &self.inner.key_pair.public_key;
        if pk.len() == 32 {
            out.copy_from_slice(pk);
        }
        out
    }

    /// A signed external message carrying up to 4 transfers (send mode 3: pay fees separately, ignore
    /// errors). `with_state_init` deploys the wallet with its first message (seqno 0).
    pub fn external_transfer(
        &self,
        seqno: u32,
        expire_at: u32,
        transfers: &[Transfer],
        with_state_init: bool,
    ) -> Result<Cell, WalletError> {
        if transfers.len() > MAX_MESSAGES {
            return Err(WalletError::TooManyMessages);
        }
        let msgs = transfers
            .iter()
            .map(|t| internal_message(t).and_then(|c| cells::to_tonlib(&c)))
            .collect::<Result<Vec<_>, _>>()?;
        let ext = self
            .inner
            .create_external_msg(expire_at, seqno, with_state_init, msgs)
            .map_err(|e| WalletError::Wallet(e.to_string()))?;
        Ok(cells::from_tonlib(&ext)?)
    }

    /// The wallet's StateInit cell (code + initial data).
    pub fn state_init_cell(&self) -> Result<Cell, WalletError> {
        use tonlib_core::wallet::version_helper::VersionHelper;
        let code = VersionHelper::get_code(WalletVersion::V4R2)
            .map_err(|e| WalletError::Wallet(e.to_string()))?;
        let data = VersionHelper::get_data(
            WalletVersion::V4R2,
            &self.inner.key_pair,
            self.inner.wallet_id,
        )
        .map_err(|e| WalletError::Wallet(e.to_string()))?;
        let code = cells::from_tonlib(code)?;
        let data = cells::from_tonlib(&data)?;
        Ok(cells::state_init_cell(&cells::state_init(code, data))?)
    }
}

/// Parses the wallet's `seqno` get-method result.
pub fn parse_seqno(stack: &[StackEntry]) -> Result<u32, CellError> {
    match stack.first() {
        Some(StackEntry::Int(v)) => {
            u32::try_from(v).map_err(|_| CellError::Unexpected("seqno out of range"))
        }
        _ => Err(CellError::Unexpected("seqno result")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tonlib-core's own v4r2 test phrase.
    const PHRASE: &str = "fancy carpet hello mandate penalty trial consider property top vicious exit rebuild tragic profit urban major total month holiday sudden rib gather media vicious";

    #[test]
    fn address_is_stateinit_hash() {
        let w = Wallet::from_phrase(&Phrase::parse(PHRASE).unwrap()).unwrap();
        let si = w.state_init_cell().unwrap();
        assert_eq!(w.address().hash, si.repr_hash().0);
        assert_eq!(w.address().workchain, 0);
    }

    #[test]
    fn generated_phrase_is_valid() {
        let p = Phrase::generate().unwrap();
        assert_eq!(p.expose().split(' ').count(), 24);
        Phrase::parse(p.expose()).unwrap();
        assert_eq!(format!("{p:?}"), "Phrase(***)");
    }

    #[test]
    fn rejects_bad_phrase() {
        assert!(Phrase::parse("hello world").is_err());
    }

    #[test]
    fn external_transfer_builds() {
        let w = Wallet::from_phrase(&Phrase::parse(PHRASE).unwrap()).unwrap();
        let t = Transfer {
            dest: TonAddress::new(0, [5; 32]),
            value: 1,
            bounce: false,
            body: None,
            state_init: None,
        };
        let ext = w
            .external_transfer(0, 1_000, std::slice::from_ref(&t), true)
            .unwrap();
        assert!(ext.reference_count() >= 2); // state init + body
        let too_many = vec![t; 5];
        assert!(matches!(
            w.external_transfer(1, 1_000, &too_many, false),
            Err(WalletError::TooManyMessages)
        ));
    }
}
