//! A file-backed [`KeyProvider`] for demos and development only.
//!
//! The personal-data vault encrypts ID numbers and names with keys from a
//! [`KeyProvider`]. A SQLite store outlives the process, so its keys must
//! too: [`FileKeyProvider`] keeps them as hex in a JSON file (`keys.json`,
//! created with permissions 0600 on Unix) next to the database, so a later
//! run can open what an earlier one wrote.
//!
//! **Not for production.** Keys lying beside the data they protect protect
//! nothing against whoever can read the directory. A deployment passes a
//! provider backed by its KMS or HSM to
//! [`CityCardBuilder::key_provider`](crate::CityCardBuilder::key_provider).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use citycard_identity::{KeyId, KeyProvider, MemoryKeyProvider, SecretKey, VaultError};
use serde::{Deserialize, Serialize};

use crate::error::CityCardError;

/// The file's layout: the current key's id, every key by id, the blind-index key.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    current: String,
    keys: BTreeMap<String, String>,
    blind_index: String,
}

/// Vault keys kept in a JSON file (demos and development only; see the module docs).
#[derive(Clone)]
pub struct FileKeyProvider {
    path: PathBuf,
    inner: MemoryKeyProvider,
}

impl fmt::Debug for FileKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKeyProvider")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn config(path: &Path, what: impl fmt::Display) -> CityCardError {
    CityCardError::Config(format!(
        "vault key file {}: {what}; restore it, or start over with an empty data directory",
        path.display()
    ))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

fn key_from_hex(text: &str) -> Option<SecretKey> {
    let text = text.trim().as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (out, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        let digit = |c: u8| char::from(c).to_digit(16);
        let hi = digit(*pair.first()?)?;
        let lo = digit(*pair.get(1)?)?;
        *out = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(SecretKey::new(bytes))
}

impl FileKeyProvider {
    /// Opens the key file at `path`, or creates it with new random keys
    /// (encryption key `key-1` and a blind-index key) when it does not exist.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<Self, CityCardError> {
        let path = path.as_ref().to_path_buf();
        if path.exists() {
            return Self::open(path);
        }
        let id = KeyId::parse("key-1").map_err(|e| config(&path, e))?;
        let key = SecretKey::generate().map_err(|e| config(&path, e))?;
        let index = SecretKey::generate().map_err(|e| config(&path, e))?;
        let file = KeyFile {
            current: id.to_string(),
            keys: BTreeMap::from([(id.to_string(), to_hex(key.expose()))]),
            blind_index: to_hex(index.expose()),
        };
        let text = serde_json::to_string_pretty(&file).map_err(|e| config(&path, e))?;
        write_private(&path, text.as_bytes()).map_err(|e| config(&path, e))?;
        Ok(Self {
            inner: MemoryKeyProvider::new(id, key, index),
            path,
        })
    }

    /// Opens an existing key file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CityCardError> {
        let path = path.as_ref().to_path_buf();
        let text = std::fs::read_to_string(&path).map_err(|e| config(&path, e))?;
        let file: KeyFile = serde_json::from_str(&text).map_err(|e| config(&path, e))?;
        let index = key_from_hex(&file.blind_index)
            .ok_or_else(|| config(&path, "the blind-index key is not 64 hex digits"))?;
        let current = KeyId::parse(&file.current).map_err(|e| config(&path, e))?;
        let current_hex = file
            .keys
            .get(&file.current)
            .ok_or_else(|| config(&path, "the current key is missing"))?;
        let current_key = key_from_hex(current_hex)
            .ok_or_else(|| config(&path, "the current key is not 64 hex digits"))?;
        let inner = MemoryKeyProvider::new(current.clone(), current_key, index);
        for (id, hex) in &file.keys {
            if *id == file.current {
                continue;
            }
            let key_id = KeyId::parse(id).map_err(|e| config(&path, e))?;
            let key = key_from_hex(hex)
                .ok_or_else(|| config(&path, format!("key {id} is not 64 hex digits")))?;
            inner.rotate(key_id, key);
        }
        // `rotate` made the last retired key current; put the current one back.
        if file.keys.len() > 1 {
            let key = key_from_hex(current_hex)
                .ok_or_else(|| config(&path, "the current key is not 64 hex digits"))?;
            inner.rotate(current, key);
        }
        Ok(Self { path, inner })
    }

    /// Where the keys are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes a new file readable by its owner only (0600 on Unix).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[async_trait]
impl KeyProvider for FileKeyProvider {
    async fn current_key_id(&self) -> Result<KeyId, VaultError> {
        self.inner.current_key_id().await
    }

    async fn key(&self, id: &KeyId) -> Result<SecretKey, VaultError> {
        self.inner.key(id).await
    }

    async fn blind_index_key(&self) -> Result<SecretKey, VaultError> {
        self.inner.blind_index_key().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_bad_text() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let hex = to_hex(&bytes);
        assert_eq!(hex.len(), 64);
        assert_eq!(key_from_hex(&hex).map(|k| *k.expose()), Some(bytes));
        assert!(key_from_hex(&hex[..62]).is_none());
        assert!(key_from_hex(&format!("{}zz", &hex[..62])).is_none());
    }

    #[tokio::test]
    async fn keys_persist_across_opens_with_owner_only_permissions() {
        let dir =
            std::env::temp_dir().join(format!("citycard-keys-{}-{}", std::process::id(), line!()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.json");
        let _ = std::fs::remove_file(&path);
        let first = FileKeyProvider::open_or_create(&path).unwrap();
        let again = FileKeyProvider::open_or_create(&path).unwrap();
        let id = first.current_key_id().await.unwrap();
        assert_eq!(id, again.current_key_id().await.unwrap());
        assert_eq!(
            first.key(&id).await.unwrap().expose(),
            again.key(&id).await.unwrap().expose()
        );
        assert_eq!(
            first.blind_index_key().await.unwrap().expose(),
            again.blind_index_key().await.unwrap().expose()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "{").unwrap();
        assert!(FileKeyProvider::open(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
