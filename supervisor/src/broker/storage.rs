//! The plugins' key/value store: one redb database in tarkd's state dir, with every
//! key namespaced by tenant and plugin. A write is acknowledged only after redb's
//! commit with `Durability::Immediate` (fsync) has returned.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const KV: TableDefinition<&str, &str> = TableDefinition::new("kv");
/// (keys, bytes of keys and values) per namespace prefix, kept in the same
/// transactions as the data, so quota checks cost no scan.
const USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("usage");

/// Limits of each tenant × plugin's store (config section `[storage]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageLimits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Keys one tenant × plugin may hold.
    pub max_keys: u64,
    /// Bytes of keys and values one tenant × plugin may hold.
    pub max_total_bytes: u64,
}

impl Default for StorageLimits {
    fn default() -> Self {
        Self {
            max_key_bytes: 512,
            max_value_bytes: 1 << 20,
            max_keys: 10_000,
            max_total_bytes: 64 << 20,
        }
    }
}

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
    #[error("storage quota exceeded: at most {0}")]
    QuotaExceeded(String),
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
    limits: StorageLimits,
    /// Tenants with quotas of their own (`tenants.<name>.storage_max_*`).
    tenant_quotas: Arc<std::collections::HashMap<String, Quota>>,
}

/// A tenant's own (keys, bytes) quotas, each replacing `[storage]`'s when set.
type Quota = (Option<u64>, Option<u64>);

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

/// Checks a key a plugin gave: non-empty, at most `max_bytes`, no control
/// characters (the namespace separator is one, so no key can reach into another
/// plugin's or tenant's space).
pub fn check_key(key: &str, max_bytes: usize) -> Result<(), StorageError> {
    if key.is_empty() {
        return Err(StorageError::InvalidKey("empty".into()));
    }
    if key.len() > max_bytes {
        return Err(StorageError::InvalidKey(format!(
            "{} bytes, over the limit of {max_bytes}",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(StorageError::InvalidKey(
            "contains a control character".into(),
        ));
    }
    Ok(())
}

impl Storage {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path, limits: StorageLimits) -> Result<Self, StorageError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(KV)?;
        txn.open_table(USAGE)?;
        txn.commit()?;
        Ok(Self {
            db: Arc::new(db),
            limits,
            tenant_quotas: Arc::default(),
        })
    }

    /// Gives tenants their own quotas (from the `[tenants]` table).
    pub fn with_tenant_quotas(mut self, tenants: &crate::config::tenants::Tenants) -> Self {
        let quotas = tenants
            .iter()
            .map(|(t, c)| (t.clone(), (c.storage_max_keys, c.storage_max_total_bytes)))
            .collect();
        self.tenant_quotas = Arc::new(quotas);
        self
    }

    /// The key and byte quotas of each of `tenant`'s plugins.
    fn quota(&self, tenant: &str) -> (u64, u64) {
        let own = self.tenant_quotas.get(tenant).copied().unwrap_or_default();
        (
            own.0.unwrap_or(self.limits.max_keys),
            own.1.unwrap_or(self.limits.max_total_bytes),
        )
    }

    pub fn check_key(&self, key: &str) -> Result<(), StorageError> {
        check_key(key, self.limits.max_key_bytes)
    }

    pub fn get(&self, ns: &Namespace, key: &str) -> Result<Option<String>, StorageError> {
        self.check_key(key)?;
        let txn = self.db.begin_read()?;
        let table = txn.open_table(KV)?;
        let full = format!("{}{key}", ns.prefix());
        Ok(table.get(full.as_str())?.map(|v| v.value().to_owned()))
    }

    /// Stores a value; refused (and nothing written) past a quota.
    pub fn set(&self, ns: &Namespace, key: &str, value: &str) -> Result<(), StorageError> {
        self.check_key(key)?;
        let limits = &self.limits;
        if value.len() > limits.max_value_bytes {
            return Err(StorageError::ValueTooLarge {
                size: value.len(),
                limit: limits.max_value_bytes,
            });
        }
        let (prefix, entry) = (ns.prefix(), (key.len() + value.len()) as u64);
        let full = format!("{prefix}{key}");
        let txn = self.db.begin_write()?;
        {
            let mut kv = txn.open_table(KV)?;
            let mut usage = txn.open_table(USAGE)?;
            let (keys, bytes) = usage
                .get(prefix.as_str())?
                .map(|u| u.value())
                .unwrap_or((0, 0));
            let old = kv
                .get(full.as_str())?
                .map(|v| (key.len() + v.value().len()) as u64);
            let (keys, bytes) = match old {
                Some(old) => (keys, bytes.saturating_sub(old) + entry),
                None => (keys + 1, bytes + entry),
            };
            let (max_keys, max_bytes) = self.quota(&ns.tenant);
            if keys > max_keys {
                return Err(StorageError::QuotaExceeded(format!("{max_keys} keys")));
            }
            if bytes > max_bytes {
                return Err(StorageError::QuotaExceeded(format!("{max_bytes} bytes")));
            }
            kv.insert(full.as_str(), value)?;
            usage.insert(prefix.as_str(), (keys, bytes))?;
        }
        txn.commit()?;
        Ok(())
    }

    pub fn delete(&self, ns: &Namespace, key: &str) -> Result<(), StorageError> {
        self.check_key(key)?;
        let prefix = ns.prefix();
        let txn = self.db.begin_write()?;
        {
            let mut kv = txn.open_table(KV)?;
            let removed = kv
                .remove(format!("{prefix}{key}").as_str())?
                .map(|v| (key.len() + v.value().len()) as u64);
            if let Some(size) = removed {
                let mut usage = txn.open_table(USAGE)?;
                let (keys, bytes) = usage
                    .get(prefix.as_str())?
                    .map(|u| u.value())
                    .unwrap_or((0, 0));
                usage.insert(
                    prefix.as_str(),
                    (keys.saturating_sub(1), bytes.saturating_sub(size)),
                )?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Bytes of keys and values stored, all tenants and plugins (a metric).
    pub fn total_bytes(&self) -> Result<u64, StorageError> {
        let txn = self.db.begin_read()?;
        let usage = txn.open_table(USAGE)?;
        let mut total = 0u64;
        for entry in usage.iter()? {
            let (_, used) = entry?;
            total = total.saturating_add(used.value().1);
        }
        Ok(total)
    }

    /// Deletes everything `plugin` stored, for every tenant, in one
    /// transaction; returns how many keys went. (`tarkctl plugin remove --purge`.)
    pub fn purge_plugin(&self, plugin: &str) -> Result<u64, StorageError> {
        let of_plugin = |stored: &str| {
            let mut parts = stored.splitn(3, SEP);
            parts.next();
            parts.next() == Some(plugin) && parts.next().is_some()
        };
        let txn = self.db.begin_write()?;
        let removed;
        {
            let mut kv = txn.open_table(KV)?;
            let keys: Vec<String> = kv
                .iter()?
                .filter_map(Result::ok)
                .map(|(k, _)| k.value().to_owned())
                .filter(|k| of_plugin(k))
                .collect();
            for k in &keys {
                kv.remove(k.as_str())?;
            }
            removed = keys.len() as u64;
            let mut usage = txn.open_table(USAGE)?;
            let prefixes: Vec<String> = usage
                .iter()?
                .filter_map(Result::ok)
                .map(|(k, _)| k.value().to_owned())
                .filter(|k| of_plugin(k))
                .collect();
            for p in &prefixes {
                usage.remove(p.as_str())?;
            }
        }
        txn.commit()?;
        Ok(removed)
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

    fn limits(max_key_bytes: usize, max_value_bytes: usize) -> StorageLimits {
        StorageLimits {
            max_key_bytes,
            max_value_bytes,
            ..StorageLimits::default()
        }
    }

    #[test]
    fn quotas_count_keys_and_bytes_and_follow_replacements_and_deletes() -> Result<(), StorageError>
    {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Backend(e.to_string()))?;
        let q = StorageLimits {
            max_keys: 2,
            max_total_bytes: 10,
            ..StorageLimits::default()
        };
        let s = Storage::open(&dir.path().join("db"), q)?;
        let (a, b) = (ns("t", "a"), ns("t", "b"));
        s.set(&a, "k1", "abc")?; // 5 bytes, 1 key
        s.set(&a, "k2", "x")?; // 8 bytes, 2 keys
        assert!(
            matches!(s.set(&a, "k3", "x"), Err(StorageError::QuotaExceeded(m)) if m == "2 keys")
        );
        s.set(&a, "k1", "abcd")?; // replacing: 9 bytes, still 2 keys
        assert!(
            matches!(s.set(&a, "k2", "xyz"), Err(StorageError::QuotaExceeded(m)) if m == "10 bytes")
        );
        assert_eq!(
            s.get(&a, "k2")?.as_deref(),
            Some("x"),
            "a refused write changed nothing"
        );
        s.set(&b, "k1", "abc")?; // another plugin has its own quota
        s.delete(&a, "k2")?;
        s.delete(&a, "never-set")?;
        s.set(&a, "k3", "x")?; // room again after the delete
        assert_eq!(s.list_keys(&a)?, vec!["k1", "k3"]);
        Ok(())
    }

    fn ns(t: &str, p: &str) -> Namespace {
        Namespace {
            tenant: t.into(),
            plugin: p.into(),
        }
    }

    /// A tenant named in `[tenants]` has its own quotas; the others keep
    /// `[storage]`'s.
    #[test]
    fn tenants_can_have_quotas_of_their_own() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Backend(e.to_string()))?;
        let mut tenants = crate::config::tenants::Tenants::new();
        tenants.insert(
            "small".into(),
            crate::config::tenants::TenantConfig {
                storage_max_keys: Some(1),
                ..Default::default()
            },
        );
        tenants.insert(
            "tiny".into(),
            crate::config::tenants::TenantConfig {
                storage_max_total_bytes: Some(4),
                ..Default::default()
            },
        );
        let s = Storage::open(&dir.path().join("db"), limits(64, 64))?.with_tenant_quotas(&tenants);
        let ns = |tenant: &str| Namespace {
            tenant: tenant.into(),
            plugin: "p".into(),
        };
        s.set(&ns("small"), "a", "1")?;
        assert!(
            matches!(s.set(&ns("small"), "b", "2"), Err(StorageError::QuotaExceeded(q)) if q == "1 keys")
        );
        s.set(&ns("tiny"), "ab", "cd")?;
        assert!(
            matches!(s.set(&ns("tiny"), "e", "f"), Err(StorageError::QuotaExceeded(q)) if q == "4 bytes")
        );
        for k in ["a", "b", "c"] {
            s.set(&ns("other"), k, "value")?;
        }
        Ok(())
    }

    #[test]
    fn plugins_and_tenants_never_see_each_other() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Backend(e.to_string()))?;
        let s = Storage::open(&dir.path().join("db"), limits(64, 16))?;
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
    fn a_purge_takes_one_plugin_for_every_tenant_and_nothing_else() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Backend(e.to_string()))?;
        let s = Storage::open(&dir.path().join("db"), limits(64, 16))?;
        // "a" must not take "ab" (a prefix of its name) or tenant "a"'s data.
        let (a1, a2, ab, other) = (ns("t1", "a"), ns("t2", "a"), ns("t1", "ab"), ns("a", "b"));
        for n in [&a1, &a2, &ab, &other] {
            s.set(n, "k", "v")?;
            s.set(n, "k2", "v")?;
        }
        assert_eq!(s.purge_plugin("a")?, 4);
        assert!(s.list_keys(&a1)?.is_empty() && s.list_keys(&a2)?.is_empty());
        assert_eq!(s.list_keys(&ab)?, ["k", "k2"]);
        assert_eq!(s.list_keys(&other)?, ["k", "k2"]);
        assert_eq!(s.total_bytes()?, 2 * (2 + 3));
        // The purged namespaces start from an empty quota.
        s.set(&a1, "k", "v")?;
        assert_eq!(s.purge_plugin("nothing-here")?, 0);
        Ok(())
    }

    #[test]
    fn keys_and_values_are_checked() -> Result<(), StorageError> {
        let dir = tempfile::tempdir().map_err(|e| StorageError::Backend(e.to_string()))?;
        let s = Storage::open(&dir.path().join("db"), limits(8, 4))?;
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
        Storage::open(&path, limits(64, 64))?.set(&ns("t", "p"), "k", "v")?;
        assert_eq!(
            Storage::open(&path, limits(64, 64))?
                .get(&ns("t", "p"), "k")?
                .as_deref(),
            Some("v")
        );
        Ok(())
    }
}
