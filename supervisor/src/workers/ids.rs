//! Worker uids. When tarkd runs as root, each tenant × plugin's processes (its
//! worker, its command tools' jails) run as a uid and gid of their own, taken
//! from `sandbox.worker_id_base` .. `+ worker_id_count`.
//!
//! Two things make that layer real rather than nominal. The range is checked
//! when the config is read ([`check_range`]): it must not reach uid 0, wrap,
//! end on `(uid_t)-1` (which `setresuid` reads as "leave unchanged": a worker
//! would stay root), touch the system or login uids `/etc/login.defs` reserves,
//! `nobody`, a configured principal or tarkd's own uid, and it must hold at
//! least `workers.max_live` uids. And uids are handed out as [`Lease`]s
//! ([`Ids`]): a tenant × plugin keeps its uid while it has a process, and a uid
//! goes to another tenant × plugin only once no process of the first is left,
//! so two live processes of different tenants or plugins never share one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::slot::WorkerKey;

/// The uids `/etc/login.defs` (shadow's `useradd`) reserves for system and
/// login accounts: `0..=sys_uid_max` and `uid_min..=uid_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    pub sys_uid_max: u32,
    pub uid_min: u32,
    pub uid_max: u32,
}

impl Default for Reserved {
    /// shadow's defaults when login.defs says nothing.
    fn default() -> Self {
        Self {
            sys_uid_max: 999,
            uid_min: 1000,
            uid_max: 60000,
        }
    }
}

impl Reserved {
    /// The values of a login.defs text, shadow's defaults for those it lacks.
    pub fn parse(text: &str) -> Self {
        let mut r = Self::default();
        let mut sys_max = None;
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(key), Some(value)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(value) = value.parse::<u32>() else {
                continue;
            };
            match key {
                "UID_MIN" => r.uid_min = value,
                "UID_MAX" => r.uid_max = value,
                "SYS_UID_MAX" => sys_max = Some(value),
                _ => {}
            }
        }
        // shadow: SYS_UID_MAX defaults to UID_MIN - 1.
        r.sys_uid_max = sys_max.unwrap_or(r.uid_min.saturating_sub(1));
        r
    }

    /// This host's, from `/etc/login.defs` (the defaults if it is absent).
    pub fn host() -> Self {
        std::fs::read_to_string("/etc/login.defs")
            .map(|t| Self::parse(&t))
            .unwrap_or_default()
    }
}

/// `nobody`, and the two values `uid_t` arithmetic ends on: `(uid_t)-1` means
/// "unchanged" to `setresuid`, `(uid_t)-2` is the kernel's overflow uid on
/// some systems.
const NEVER: [(u32, &str); 4] = [
    (65534, "nobody"),
    (65535, "the 16-bit (uid_t)-1"),
    (u32::MAX - 1, "(uid_t)-2"),
    (u32::MAX, "(uid_t)-1, which setresuid reads as 'unchanged'"),
];

/// Whether `base .. base + count` may be the workers' uids: each refusal
/// names the setting. `taken` are uids that belong to someone else (tarkd
/// itself, configured principals), with who they are.
pub fn check_range(
    base: u32,
    count: u32,
    max_live: usize,
    reserved: &Reserved,
    taken: &[(u32, String)],
) -> Result<(), String> {
    let setting = "sandbox.worker_id_base/worker_id_count";
    if count == 0 {
        return Err("sandbox.worker_id_count must be positive".into());
    }
    if base == 0 {
        return Err("sandbox.worker_id_base is 0: workers would run as root".into());
    }
    let Some(last) = base.checked_add(count - 1) else {
        return Err(format!(
            "{setting}: {base} + {count} passes the largest uid (4294967295): the range wraps"
        ));
    };
    if (usize::try_from(count).unwrap_or(usize::MAX)) < max_live {
        return Err(format!(
            "sandbox.worker_id_count ({count}) is below workers.max_live ({max_live}): live workers of different tenants or plugins would share a uid"
        ));
    }
    let within = |uid: u32| (base..=last).contains(&uid);
    if let Some((uid, what)) = NEVER.iter().find(|(uid, _)| within(*uid)) {
        return Err(format!(
            "{setting}: the range {base}..={last} includes {uid} ({what})"
        ));
    }
    let overlaps = |lo: u32, hi: u32| lo <= last && base <= hi;
    if overlaps(0, reserved.sys_uid_max) {
        return Err(format!(
            "{setting}: the range {base}..={last} overlaps the system uids 0..={} (SYS_UID_MAX in /etc/login.defs)",
            reserved.sys_uid_max
        ));
    }
    if overlaps(reserved.uid_min, reserved.uid_max) {
        return Err(format!(
            "{setting}: the range {base}..={last} overlaps the login uids {}..={} (UID_MIN and UID_MAX in /etc/login.defs)",
            reserved.uid_min, reserved.uid_max
        ));
    }
    if let Some((uid, who)) = taken.iter().find(|(uid, _)| within(*uid)) {
        return Err(format!(
            "{setting}: the range {base}..={last} includes uid {uid} ({who})"
        ));
    }
    Ok(())
}

/// Why no uid could be leased.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no worker uid is free: all {0} of sandbox.worker_id_count are held by live processes of other tenants or plugins"
)]
pub struct Exhausted(pub u32);

#[derive(Debug)]
struct Held {
    offset: u32,
    /// Leases alive (processes not yet gone).
    holders: usize,
}

#[derive(Debug)]
struct Pool {
    base: u32,
    count: u32,
    /// Offsets handed out so far, in order (each offset once).
    next: u32,
    held: HashMap<WorkerKey, Held>,
}

/// The uid allocator of one tarkd.
#[derive(Debug, Clone)]
pub struct Ids(Arc<Mutex<Pool>>);

/// One process's hold on its tenant × plugin's uid; released when dropped
/// (once the process has exited).
#[derive(Debug)]
pub struct Lease {
    pool: Arc<Mutex<Pool>>,
    key: WorkerKey,
    pub uid: u32,
}

impl Ids {
    /// The range must have passed [`check_range`].
    pub fn new(base: u32, count: u32) -> Self {
        Self(Arc::new(Mutex::new(Pool {
            base,
            count,
            next: 0,
            held: HashMap::new(),
        })))
    }

    /// A uid for one more process of `key`: the one it holds already, else a
    /// fresh one, else one whose tenant × plugin has no process left.
    pub fn lease(&self, key: &WorkerKey) -> Result<Lease, Exhausted> {
        let mut pool = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let offset = if let Some(held) = pool.held.get_mut(key) {
            held.holders += 1;
            held.offset
        } else {
            let offset = if pool.next < pool.count {
                pool.next += 1;
                pool.next - 1
            } else {
                // The least offset no process holds: deterministic, and
                // found only when the range is spent (count ≥ max_live).
                let free = pool
                    .held
                    .iter()
                    .filter(|(_, h)| h.holders == 0)
                    .min_by_key(|(_, h)| h.offset)
                    .map(|(k, h)| (k.clone(), h.offset));
                let Some((old, offset)) = free else {
                    return Err(Exhausted(pool.count));
                };
                pool.held.remove(&old);
                offset
            };
            pool.held.insert(key.clone(), Held { offset, holders: 1 });
            offset
        };
        Ok(Lease {
            pool: Arc::clone(&self.0),
            key: key.clone(),
            // check_range: base + count - 1 does not overflow.
            uid: pool.base + offset,
        })
    }
}

impl Ids {
    /// Moves a standby worker's lease to `key`, the tenant × plugin it is
    /// bound to: the worker already runs as the lease's uid, so `key` takes
    /// that uid. Refused (the lease given back unchanged) while a process of
    /// `key` holds a uid of its own: two uids for one tenant × plugin would
    /// let its worker and its command jails tell each other apart no more,
    /// and the old one could meet another tenant later.
    pub fn rekey(&self, mut lease: Lease, key: &WorkerKey) -> Result<Lease, Lease> {
        let mut pool = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if pool.held.get(key).is_some_and(|h| h.holders > 0) {
            drop(pool);
            return Err(lease);
        }
        let Some(moved) = pool.held.remove(&lease.key) else {
            drop(pool);
            return Err(lease);
        };
        if moved.holders != 1 {
            pool.held.insert(lease.key.clone(), moved);
            drop(pool);
            return Err(lease);
        }
        // The uid `key` held before, free now, stays findable for reuse
        // under the key the lease leaves.
        if let Some(old) = pool.held.remove(key) {
            pool.held.insert(
                lease.key.clone(),
                Held {
                    offset: old.offset,
                    holders: 0,
                },
            );
        }
        pool.held.insert(key.clone(), moved);
        drop(pool);
        lease.key = key.clone();
        Ok(lease)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = pool.held.get_mut(&self.key) {
            held.holders = held.holders.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str, plugin: &str) -> WorkerKey {
        WorkerKey {
            tenant: tenant.into(),
            plugin: plugin.into(),
        }
    }

    #[test]
    fn ranges_are_checked_at_every_edge() {
        let r = Reserved::default();
        let taken = [
            (0, "tarkd".to_owned()),
            (700_005, "principal agent-a".to_owned()),
        ];
        let max = u32::MAX;
        // (base, count, max_live, Ok or a part of the error)
        let cases: &[(u32, u32, usize, Result<(), &str>)] = &[
            (600_000, 65_536, 1024, Ok(())),
            (100_000, 1024, 1024, Ok(())),
            (0, 10, 1, Err("workers would run as root")),
            (1, 10, 1, Err("system uids 0..=999")),
            (999, 1, 1, Err("system uids")),
            (1000, 1, 1, Err("login uids 1000..=60000")),
            (60_000, 1, 1, Err("login uids")),
            (60_001, 1, 1, Ok(())),
            (65_000, 1000, 1, Err("65534 (nobody)")),
            (65_535, 1, 1, Err("65535")),
            (max, 1, 1, Err("(uid_t)-1")),
            (max - 1, 1, 1, Err("(uid_t)-2")),
            (max - 10, 5, 1, Ok(())),
            (max - 10, 10, 1, Err("(uid_t)-2")),
            (max - 10, 12, 1, Err("wraps")),
            (max, 2, 1, Err("wraps")),
            (2_000_000_000, max, 1, Err("wraps")),
            (600_000, 0, 1, Err("must be positive")),
            (600_000, 2, 4, Err("below workers.max_live (4)")),
            (600_000, 4, 4, Ok(())),
            (700_000, 10, 1, Err("uid 700005 (principal agent-a)")),
        ];
        for &(base, count, live, want) in cases {
            let got = check_range(base, count, live, &r, &taken);
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(e), Err(part)) => assert!(e.contains(part), "{base}+{count}: {e}"),
                (got, want) => panic!("{base}+{count}: {got:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn login_defs_are_read_with_shadows_defaults() {
        let text =
            "# comment\nUID_MIN\t\t 2000\nUID_MAX  80000\nGID_MIN 1000\nbogus\nSYS_UID_MAX x\n";
        assert_eq!(
            Reserved::parse(text),
            Reserved {
                sys_uid_max: 1999,
                uid_min: 2000,
                uid_max: 80000
            }
        );
        assert_eq!(Reserved::parse(""), Reserved::default());
        assert_eq!(Reserved::parse("SYS_UID_MAX 499").sys_uid_max, 499);
    }

    #[test]
    fn a_uid_is_shared_only_by_one_tenant_and_plugin() -> Result<(), Exhausted> {
        let ids = Ids::new(600_000, 2);
        let a = ids.lease(&key("t1", "p"))?;
        let a2 = ids.lease(&key("t1", "p"))?;
        assert_eq!((a.uid, a2.uid), (600_000, 600_000));
        let b = ids.lease(&key("t2", "p"))?;
        assert_eq!(b.uid, 600_001);
        // Both uids held by live processes: a third key gets none.
        assert_eq!(ids.lease(&key("t3", "p")).err(), Some(Exhausted(2)));
        drop(a);
        assert!(
            ids.lease(&key("t3", "p")).is_err(),
            "t1/p still has a process"
        );
        drop(a2);
        // t1/p has no process left: its uid goes to t3/p.
        let c = ids.lease(&key("t3", "p"))?;
        assert_eq!(c.uid, 600_000);
        // And t1/p, back, waits for one to be free.
        assert!(ids.lease(&key("t1", "p")).is_err());
        drop(b);
        assert_eq!(ids.lease(&key("t1", "p"))?.uid, 600_001);
        // A key keeps its uid while it is not reassigned.
        drop(c);
        assert_eq!(ids.lease(&key("t3", "p"))?.uid, 600_000);
        Ok(())
    }

    #[test]
    fn a_standby_lease_moves_only_to_a_key_with_no_process() -> Result<(), Exhausted> {
        let ids = Ids::new(600_000, 3);
        let standby = ids.lease(&key("@standby", "1"))?;
        let bound = ids
            .rekey(standby, &key("t1", "p"))
            .map_err(|_| Exhausted(0))?;
        assert_eq!(bound.uid, 600_000);
        // t1/p now holds it: one more process of t1/p shares it...
        assert_eq!(ids.lease(&key("t1", "p"))?.uid, 600_000);
        // ...and a second standby cannot be bound to t1/p while it is held.
        let other = ids.lease(&key("@standby", "2"))?;
        let other = match ids.rekey(other, &key("t1", "p")) {
            Ok(l) => panic!("bound to a key with a live process: uid {}", l.uid),
            Err(l) => l,
        };
        assert_eq!(other.uid, 600_001, "given back unchanged");
        // Once t1/p has no process, a standby takes its place; the uid t1/p
        // had stays free for others.
        drop(bound);
        let rebound = ids
            .rekey(other, &key("t1", "p"))
            .map_err(|_| Exhausted(0))?;
        assert_eq!(rebound.uid, 600_001);
        let t2 = ids.lease(&key("t2", "p"))?;
        assert_eq!(t2.uid, 600_002);
        let t3 = ids.lease(&key("t3", "p"))?;
        assert_eq!(t3.uid, 600_000, "t1/p's old uid is free again");
        // The rebound lease is t1/p's: while it lives nobody else gets 600_001.
        assert_eq!(ids.lease(&key("t4", "p")).err(), Some(Exhausted(3)));
        drop(rebound);
        assert_eq!(ids.lease(&key("t4", "p"))?.uid, 600_001);
        Ok(())
    }
}
