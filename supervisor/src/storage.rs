//! The plugins' key/value store: one redb database in tarkd's state dir, with every
//! key namespaced by tenant and plugin. A write is acknowledged only after redb's
//! commit with `Durability::Immediate` (fsync) has returned.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, TableDefinition};

const KV: TableDefinition<&str, &str> = TableDefinition::new("kv");

/// Separates tenant, plugin and key inside a stored key. Tenant and plugin names
/// cannot contain it and keys may not contain control characters.
const SEP: char = '\u{0}';

/// Why a storage request failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("value of {size} bytes exceeds the limit of {limit} bytes")]
    ValueTooLarge { size: usize, limit: usize },
    #[error("storage failure: {0}")]
    Backend(String),
}

impl From<redb::Error> for StorageError {
    fn from(e: redb::Error) -> Self {
        StorageError::Backend(e.to_string())
    }
}

macro_rules! backend {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                StorageError::from(redb::Error::from(e))
            }
        }
    )*};
}
backend!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The store, shared by every broker.
#[derive(Clone)]
pub struct Storage {
    db: Arc<Database>,
    max_key_bytes: usize,
    max_value_bytes: usize,
}

/// One plugin's view of the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    pub tenant: String,
    pub plugin: String,
}

impl Namespace {
    fn prefix(&self) -> String {
        format!("{}{SEP}{}{SEP}", self.tenant, self.plugin)
    }
}

impl Storage {
    /// Opens (or creates) the database at `path`.
    pub fn open(
        path: &Path,
        max_key_bytes: usize,
        max_value_bytes: usize,
    ) -> Result<Self, StorageError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(KV)?;
        txn.commit()?;
        Ok(Self {
            db: Arc::new(db),
            max_key_bytes,
            max_value_bytes,
        })
    }

    /// Checks a key a plugin gave: non-empty, bounded, no control characters.
    pub fn check_key(&self, key: &str) -> Result<(), StorageError> {
        if key.is_empty() {
            return Err(StorageError::InvalidKey("empty".into()));
        }
        if key.len() > self.max_key_bytes {
            return Err(StorageError::InvalidKey(format!(
                "{} bytes, over the limit of {}",
                key.len(),
                self.max_key_bytes
            )));
        }
        if key.chars().any(char::is_control) {
            return Err(StorageError::InvalidKey(
                "contains a control character".into(),
            ));
        }
        Ok(())
    }

    pub fn get(&self, ns: &Namespace, key: &str) -> Result<Option<String>, StorageError> {
        self.check_key(key)?;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(KV)?;
        let full = format!("{}{key}", ns.prefix());
        Ok(table.get(full.as_str())?.map(|v| v.value().to_owned()))
    }

    pub fn set(&self, ns: &Namespace, key: &str, value: &str) -> Result<(), StorageError> {
        self.check_key(key)?;
        if value.len() > self.max_value_bytes {
            return Err(StorageError::ValueTooLarge {
                size: value.len(),
                limit: self.max_value_bytes,
            });
        }
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(KV)?;
            table.insert(format!("{}{key}", ns.prefix()).as_str(), value)?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn delete(&self, ns: &Namespace, key: &str) -> Result<(), StorageError> {
        self.check_key(key)?;
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(KV)?;
            table.remove(format!("{}{key}", ns.prefix()).as_str())?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn list_keys(&self, ns: &Namespace) -> Result<Vec<String>, StorageError> {
        let prefix = ns.prefix();
        let txn = self.db.begin_read()?;
        let table = txn.open_table(KV)?;
        let mut keys = Vec::new();
        for entry in table.range(prefix.as_str()..)? {
            let (k, _) = entry?;
            let Some(key) = k.value().strip_prefix(prefix.as_str()) else {
                break;
            };
            keys.push(key.to_owned());
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(t: &str, p: &str) -> Namespace {
        Namespace {
            tenant: t.into(),
            plugin: p.into(),
        }
    }

    #[test]
    fn plugins_and_tenants_never_see_each_other() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Backend(e.to_string()))?;
        let s = Storage::open(&dir.path().join("db"), 64, 16)?;
        let (a, b, c) = (ns("t1", "a"), ns("t1", "ab"), ns("t2", "a"));
        s.set(&a, "k", "from a")?;
        s.set(&b, "k", "from ab")?;
        s.set(&c, "k", "from t2")?;
        assert_eq!(s.get(&a, "k")?.as_deref(), Some("from a"));
        assert_eq!(s.get(&b, "k")?.as_deref(), Some("from ab"));
        assert_eq!(s.get(&c, "k")?.as_deref(), Some("from t2"));
        assert_eq!(s.list_keys(&a)?, vec!["k"]);
        s.delete(&a, "k")?;
        assert_eq!(s.get(&a, "k")?, None);
        assert_eq!(s.get(&b, "k")?.as_deref(), Some("from ab"));
        assert!(s.list_keys(&a)?.is_empty());
        Ok(())
    }

    #[test]
    fn keys_and_values_are_checked() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Backend(e.to_string()))?;
        let s = Storage::open(&dir.path().join("db"), 8, 4)?;
        let a = ns("t", "a");
        for bad in ["", "123456789", "a\u{0}b", "a\nb", "\u{7f}"] {
            assert!(
                matches!(s.set(&a, bad, "v"), Err(StorageError::InvalidKey(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            s.set(&a, "k", "12345"),
            Err(StorageError::ValueTooLarge { size: 5, limit: 4 })
        ));
        s.set(&a, "ключ", "v")?;
        Ok(())
    }

    #[test]
    fn writes_survive_reopening() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Backend(e.to_string()))?;
        let path = dir.path().join("db");
        Storage::open(&path, 64, 64)?.set(&ns("t", "p"), "k", "v")?;
        assert_eq!(
            Storage::open(&path, 64, 64)?
                .get(&ns("t", "p"), "k")?
                .as_deref(),
            Some("v")
        );
        Ok(())
    }
}
