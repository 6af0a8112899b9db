//! Sealing credentials at rest: AES-256-GCM under the master key, plus keyed fingerprints.

use aes_gcm::{
    aead::{Aead, KeyInit, Payload},
    Aes256Gcm, Nonce,
};
use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use super::SealedCredentials;
use crate::domain::{AccountId, Credentials};

/// Why the master key or a sealed record is unusable.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("SNAPGATE_MASTER_KEY is not set: generate one with `openssl rand -base64 32` (or `snapgate demo` makes a local one)")]
    MissingKey,
    #[error("SNAPGATE_MASTER_KEY must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("SNAPGATE_PREVIOUS_MASTER_KEYS must be comma-separated base64 keys of 32 bytes each")]
    BadPreviousKey,
    #[error("record was sealed with key `{0}`, which is not loaded")]
    UnknownKey(String),
    #[error("sealed record failed authentication (tampered or wrong key)")]
    Open,
}

/// A sealed credential record as stored: the key id, a fresh nonce and the ciphertext.
#[derive(Clone, Debug, Default)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

/// Seals and opens credentials; the only holder of the master key (and of the previous keys
/// still needed to open records sealed before a rotation).
pub struct Sealer {
    key_id: String,
    cipher: Aes256Gcm,
    fingerprint_key: [u8; 32],
    /// Event-log cursors: the active key's, then each earlier key's, so a follower's cursor
    /// outlives a key rotation.
    cursor_keys: Vec<aes::Aes256>,
    /// Earlier master keys by key id: they open records, and seal them only while another
    /// replica does not hold the active key yet (see [`Sealer::seal_with`]).
    previous: Vec<(String, Aes256Gcm)>,
    /// The earlier key new records are sealed with while a rollout of the active key is under
    /// way; `None`: the active key.
    sealing: std::sync::RwLock<Option<usize>>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Builds a sealer from the base64 master key.
    pub fn from_base64(key: Option<&SecretString>) -> Result<Self, SealError> {
        let key = key.ok_or(SealError::MissingKey)?;
        let bytes = STANDARD
            .decode(key.expose_secret().trim())
            .map_err(|_| SealError::BadKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        Ok(Self::from_bytes(&bytes))
    }

    /// Also opens records sealed under these earlier keys (comma-separated base64, as
    /// `SNAPGATE_PREVIOUS_MASTER_KEYS` gives them); empty entries are ignored.
    pub fn with_previous(mut self, keys: Option<&SecretString>) -> Result<Self, SealError> {
        let Some(keys) = keys else {
            return Ok(self);
        };
        for key in keys
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            let bytes: [u8; 32] = STANDARD
                .decode(key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or(SealError::BadPreviousKey)?;
            let old = Self::from_bytes(&bytes);
            if old.key_id != self.key_id {
                self.previous.push((old.key_id, old.cipher));
                self.cursor_keys.extend(old.cursor_keys);
            }
        }
        Ok(self)
    }

    pub fn from_bytes(key: &[u8; 32]) -> Self {
        // The key id is a hash of the key, so rotating keys needs no extra bookkeeping.
        let digest = Sha256::digest([b"snapgate-key-id:".as_slice(), key].concat());
        let key_id = format!("k-{}", hex::encode(&digest[..6]));
        let fingerprint_key: [u8; 32] =
            Sha256::digest([b"snapgate-fingerprint:".as_slice(), key].concat()).into();
        let cursor_key: [u8; 32] =
            Sha256::digest([b"snapgate-event-cursor:".as_slice(), key].concat()).into();
        Self {
            key_id,
            cipher: Aes256Gcm::new(key.into()),
            fingerprint_key,
            cursor_keys: vec![<aes::Aes256 as aes::cipher::KeyInit>::new(
                &cursor_key.into(),
            )],
            previous: Vec::new(),
            sealing: std::sync::RwLock::new(None),
        }
    }

    /// A new random master key, base64 encoded.
    pub fn generate_key() -> String {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        STANDARD.encode(key)
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Every key this process holds: the active one first, then the earlier ones.
    pub fn key_ids(&self) -> Vec<String> {
        std::iter::once(self.key_id.clone())
            .chain(self.previous.iter().map(|(id, _)| id.clone()))
            .collect()
    }

    /// Whether this process can open records sealed under `key_id`.
    pub fn holds(&self, key_id: &str) -> bool {
        key_id == self.key_id || self.previous.iter().any(|(id, _)| id == key_id)
    }

    /// Seals new records under `key_id` (one this process holds; the active key otherwise):
    /// during a rollout, the newest key every live replica holds, so no replica meets a
    /// record it cannot open.
    pub fn seal_with(&self, key_id: &str) {
        let index = self.previous.iter().position(|(id, _)| id == key_id);
        *self.sealing.write().unwrap_or_else(|e| e.into_inner()) = index;
    }

    /// The key new records are sealed under now.
    pub fn sealing_key_id(&self) -> String {
        match *self.sealing.read().unwrap_or_else(|e| e.into_inner()) {
            Some(i) => self.previous[i].0.clone(),
            None => self.key_id.clone(),
        }
    }

    /// Seals an account's credentials, bound to the tenant and account (associated data) so a
    /// sealed record cannot be moved to another account; with their field names and keyed
    /// fingerprint, as the store keeps them.
    pub fn seal_account(
        &self,
        tenant: &str,
        account: &AccountId,
        creds: &Credentials,
    ) -> SealedCredentials {
        SealedCredentials {
            fields: creds.field_names(),
            fingerprint: self.fingerprint(creds),
            sealed: self.seal(creds, &account_context(tenant, account)),
        }
    }

    /// Opens an account's sealed credentials for a provider call.
    pub fn open_account(
        &self,
        tenant: &str,
        account: &AccountId,
        sealed: &Sealed,
    ) -> Result<Credentials, SealError> {
        self.open(sealed, &account_context(tenant, account))
    }

    /// The record sealed again under the active key (opened with whichever key sealed it).
    pub fn reseal_account(
        &self,
        tenant: &str,
        account: &AccountId,
        sealed: &Sealed,
    ) -> Result<Sealed, SealError> {
        let context = account_context(tenant, account);
        Ok(self.seal(&self.open(sealed, &context)?, &context))
    }

    /// Seals a webhook endpoint's signing secrets, bound to the tenant and endpoint.
    pub fn seal_webhook(&self, tenant: &str, webhook: &str, secrets: &Credentials) -> Sealed {
        self.seal(secrets, &webhook_context(tenant, webhook))
    }

    /// Opens a webhook endpoint's signing secrets.
    pub fn open_webhook(
        &self,
        tenant: &str,
        webhook: &str,
        sealed: &Sealed,
    ) -> Result<Credentials, SealError> {
        self.open(sealed, &webhook_context(tenant, webhook))
    }

    /// A webhook's secrets sealed again under the active key.
    pub fn reseal_webhook(
        &self,
        tenant: &str,
        webhook: &str,
        sealed: &Sealed,
    ) -> Result<Sealed, SealError> {
        let context = webhook_context(tenant, webhook);
        Ok(self.seal(&self.open(sealed, &context)?, &context))
    }

    /// Seals credentials; `context` is bound as associated data.
    fn seal(&self, creds: &Credentials, context: &str) -> Sealed {
        let plain = plaintext(creds);
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealing = *self.sealing.read().unwrap_or_else(|e| e.into_inner());
        let (key_id, cipher) = match sealing.and_then(|i| self.previous.get(i)) {
            Some((id, cipher)) => (id, cipher),
            None => (&self.key_id, &self.cipher),
        };
        let ciphertext = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.expose_secret().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // AES-GCM encryption only fails for messages over 64 GiB.
            .unwrap_or_default();
        Sealed {
            key_id: key_id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Opens a record sealed under `context`.
    fn open(&self, sealed: &Sealed, context: &str) -> Result<Credentials, SealError> {
        let cipher = if sealed.key_id == self.key_id {
            &self.cipher
        } else {
            self.previous
                .iter()
                .find(|(id, _)| *id == sealed.key_id)
                .map(|(_, cipher)| cipher)
                .ok_or_else(|| SealError::UnknownKey(sealed.key_id.clone()))?
        };
        if sealed.nonce.len() != 12 {
            return Err(SealError::Open);
        }
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Open)?;
        let map: std::collections::BTreeMap<String, String> =
            serde_json::from_slice(&plain).map_err(|_| SealError::Open)?;
        Ok(Credentials::new(
            map.into_iter()
                .map(|(k, v)| (k, SecretString::from(v)))
                .collect(),
        ))
    }

    /// An HMAC-SHA256 tag over `data` under a key derived from the master key (page tokens).
    pub fn tag(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.fingerprint_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(b"snapgate-tag:");
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// A tenant's event-log cursor for position `seq` of the log: one AES block holding the
    /// position and a hash of the tenant. Positions are one sequence for every tenant; sealed,
    /// a cursor says nothing of how many events other tenants had between two of them, and it
    /// opens for its own tenant only.
    pub fn seal_cursor(&self, tenant: &str, seq: i64) -> String {
        use aes::cipher::BlockEncrypt;
        let mut block = cursor_block(tenant, seq);
        self.cursor_keys[0].encrypt_block(&mut block);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(block)
    }

    /// The position a cursor of [`Sealer::seal_cursor`] holds, if it is one of this tenant's.
    pub fn open_cursor(&self, tenant: &str, cursor: &str) -> Option<i64> {
        use aes::cipher::BlockDecrypt;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()?;
        let sealed: [u8; 16] = bytes.try_into().ok()?;
        self.cursor_keys.iter().find_map(|key| {
            let mut block = aes::Block::from(sealed);
            key.decrypt_block(&mut block);
            let seq = i64::from_be_bytes(block[..8].try_into().ok()?);
            (cursor_block(tenant, seq) == block && seq >= 0).then_some(seq)
        })
    }

    /// A keyed, non-reversible fingerprint: equal credentials give equal fingerprints.
    pub fn fingerprint(&self, creds: &Credentials) -> String {
        let plain = plaintext(creds);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.fingerprint_key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(plain.expose_secret().as_bytes());
        format!(
            "hmac-sha256:{}",
            hex::encode(&mac.finalize().into_bytes()[..8])
        )
    }
}

fn cursor_block(tenant: &str, seq: i64) -> aes::Block {
    let mut block = [0u8; 16];
    block[..8].copy_from_slice(&seq.to_be_bytes());
    block[8..].copy_from_slice(&Sha256::digest(tenant.as_bytes())[..8]);
    block.into()
}

fn plaintext(creds: &Credentials) -> SecretString {
    let map: std::collections::BTreeMap<&str, &str> = creds
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose_secret()))
        .collect();
    SecretString::from(serde_json::to_string(&map).unwrap_or_default())
}

/// The associated data binding a sealed record to its account: written once, here, so
/// sealing and opening cannot disagree.
fn webhook_context(tenant: &str, webhook: &str) -> String {
    format!("webhook:{tenant}/{webhook}")
}

fn account_context(tenant: &str, account: &AccountId) -> String {
    format!("{tenant}/{account}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(v: &str) -> Credentials {
        Credentials::new([("token".to_owned(), SecretString::from(v.to_owned()))].into())
    }

    #[test]
    fn sealed_credentials_open_only_in_their_own_context() {
        let s = Sealer::from_bytes(&[7; 32]);
        let sealed = s.seal(&creds("hunter2"), "t1/acc");
        assert!(!String::from_utf8_lossy(&sealed.ciphertext).contains("hunter2"));
        let opened = s.open(&sealed, "t1/acc").unwrap();
        assert_eq!(opened.get("token").unwrap().expose_secret(), "hunter2");
        assert!(matches!(s.open(&sealed, "t2/acc"), Err(SealError::Open)));
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let s = Sealer::from_bytes(&[7; 32]);
        let a = s.seal(&creds("x"), "c");
        let b = s.seal(&creds("x"), "c");
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn fingerprint_is_stable_and_hides_the_secret() {
        let s = Sealer::from_bytes(&[7; 32]);
        assert_eq!(s.fingerprint(&creds("abc")), s.fingerprint(&creds("abc")));
        assert_ne!(s.fingerprint(&creds("abc")), s.fingerprint(&creds("abd")));
        assert!(!s.fingerprint(&creds("abc")).contains("abc"));
    }

    #[test]
    fn bad_master_keys_are_refused() {
        assert!(matches!(
            Sealer::from_base64(None),
            Err(SealError::MissingKey)
        ));
        let short = SecretString::from(STANDARD.encode([1u8; 16]));
        assert!(matches!(
            Sealer::from_base64(Some(&short)),
            Err(SealError::BadKey)
        ));
    }
}
