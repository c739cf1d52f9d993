//! How many workers may live, and which one gives way. Every live worker
//! holds a [`Ticket`] from [`Live`] (global and per-tenant counts, released
//! when its process has exited); a start that would pass a cap first stops the
//! least recently used idle worker in that scope ([`victim`]), and fails with
//! the reason only when every worker in scope is busy. Idle workers are also
//! stopped after `workers.idle_timeout_s`: what a plugin keeps is in storage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `[workers]` configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// An idle worker is stopped after this many seconds (0: never).
    pub idle_timeout_s: u64,
    /// Live workers in all.
    pub max_live: usize,
    /// Live workers of one tenant.
    pub max_live_per_tenant: usize,
    /// How long a plugin has to say what tools it offers (each of its
    /// `get-tools` and `get-risk-level` calls), whatever its call deadline.
    pub describe_deadline_ms: u64,
    /// Worker processes kept started and waiting, bound to a tenant × plugin
    /// by a first call or a restart (0: none; every start spawns). They
    /// count under `max_live`, and only take places no worker needs.
    pub standby: usize,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            idle_timeout_s: 300,
            max_live: 1024,
            max_live_per_tenant: 32,
            describe_deadline_ms: 2000,
            standby: 2,
        }
    }
}

impl WorkersConfig {
    pub fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_s > 0).then(|| Duration::from_secs(self.idle_timeout_s))
    }
}

/// tarkd's own workers (tool lists are described by one) run for a tenant no
/// caller can name: it starts with `@`, which tenant names never contain.
/// They count under `max_live` only.
pub fn internal(tenant: &str) -> bool {
    tenant.starts_with('@')
}

/// Which cap a start would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    All,
    Tenant,
}

#[derive(Default)]
struct Counts {
    all: usize,
    tenants: HashMap<String, usize>,
}

/// The live workers, counted.
#[derive(Default)]
pub struct Live(Arc<Mutex<Counts>>);

impl Live {
    /// A ticket for one more worker of `tenant` (whose own cap is
    /// `tenant_cap`), or which cap is full.
    pub fn reserve(
        &self,
        tenant: &str,
        caps: &WorkersConfig,
        tenant_cap: usize,
    ) -> Result<Ticket, Full> {
        self.reserve_if(tenant, caps, tenant_cap, || true)
    }

    /// [`Self::reserve`] if `allowed()` holds, judged under the same lock as
    /// the counts (a standby worker takes a place only while no start waits
    /// for one).
    pub fn reserve_if(
        &self,
        tenant: &str,
        caps: &WorkersConfig,
        tenant_cap: usize,
        allowed: impl FnOnce() -> bool,
    ) -> Result<Ticket, Full> {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if c.all >= caps.max_live || !allowed() {
            return Err(Full::All);
        }
        let mine = c.tenants.get(tenant).copied().unwrap_or(0);
        if mine >= tenant_cap && !internal(tenant) {
            return Err(Full::Tenant);
        }
        c.all += 1;
        *c.tenants.entry(tenant.to_owned()).or_default() += 1;
        Ok(Ticket {
            counts: Arc::clone(&self.0),
            tenant: tenant.to_owned(),
        })
    }

    /// Live workers in all, and of `tenant`.
    pub fn count(&self, tenant: &str) -> (usize, usize) {
        let c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (c.all, c.tenants.get(tenant).copied().unwrap_or(0))
    }
}

/// One live worker's place under the caps; given back when dropped.
pub struct Ticket {
    counts: Arc<Mutex<Counts>>,
    tenant: String,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.all = c.all.saturating_sub(1);
        if let Some(n) = c.tenants.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.tenants.remove(&self.tenant);
            }
        }
    }
}

/// A live worker as the caps see it.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    pub tenant: &'a str,
    /// Calls in flight (a busy worker never gives way).
    pub busy: bool,
    pub last_used: Instant,
}

/// The worker to stop so one more of `tenant` fits under `full`: the least
/// recently used idle one in that cap's scope.
pub fn victim(candidates: &[Candidate<'_>], full: Full, tenant: &str) -> Option<usize> {
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.busy && (full == Full::All || c.tenant == tenant))
        .min_by_key(|(_, c)| c.last_used)
        .map(|(i, _)| i)
}

/// Whether a worker last used at `last_used` has been idle past `timeout`.
pub fn idle_past(busy: bool, last_used: Instant, now: Instant, timeout: Duration) -> bool {
    !busy && now.saturating_duration_since(last_used) >= timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: WorkersConfig = WorkersConfig {
        idle_timeout_s: 1,
        max_live: 3,
        max_live_per_tenant: 2,
        describe_deadline_ms: 1000,
        standby: 0,
    };

    #[test]
    fn tickets_count_and_give_back() {
        let live = Live::default();
        let a1 = live.reserve("a", &CAPS, CAPS.max_live_per_tenant);
        let a2 = live.reserve("a", &CAPS, CAPS.max_live_per_tenant);
        assert!(a1.is_ok() && a2.is_ok());
        assert_eq!(
            live.reserve("a", &CAPS, CAPS.max_live_per_tenant).err(),
            Some(Full::Tenant)
        );
        let b1 = live.reserve("b", &CAPS, CAPS.max_live_per_tenant);
        assert!(b1.is_ok());
        assert_eq!(live.count("a"), (3, 2));
        assert_eq!(
            live.reserve("c", &CAPS, CAPS.max_live_per_tenant).err(),
            Some(Full::All)
        );
        drop(a1);
        assert_eq!(live.count("a"), (2, 1));
        assert!(
            live.reserve("c", &CAPS, CAPS.max_live_per_tenant).is_ok(),
            "the dropped ticket was given back"
        );
        assert_eq!(live.count("c"), (2, 0), "and the new one dropped at once");
        drop((a2, b1));
        assert_eq!(live.count("a"), (0, 0));
        // tarkd's own tenant is under the global cap only.
        let own: Vec<_> = (0..3)
            .map(|_| live.reserve("@describe", &CAPS, CAPS.max_live_per_tenant))
            .collect();
        assert!(own.iter().all(Result::is_ok));
        assert_eq!(
            live.reserve("@describe", &CAPS, CAPS.max_live_per_tenant)
                .err(),
            Some(Full::All)
        );
        drop(own);
        // A tenant's own cap (tenants.<name>.max_live) replaces the default.
        let big = live.reserve("b", &CAPS, 3);
        let big2 = live.reserve("b", &CAPS, 3);
        let big3 = live.reserve("b", &CAPS, 3);
        assert!(big.is_ok() && big2.is_ok() && big3.is_ok());
        assert_eq!(live.reserve("c", &CAPS, 0).err(), Some(Full::All));
        drop((big, big2, big3));
        assert_eq!(live.reserve("c", &CAPS, 0).err(), Some(Full::Tenant));
        // A conditional reservation takes nothing when refused.
        let refused = live.reserve_if("@standby", &CAPS, usize::MAX, || false);
        assert_eq!(refused.err(), Some(Full::All));
        assert_eq!(live.count("@standby"), (0, 0));
        let taken = live.reserve_if("@standby", &CAPS, usize::MAX, || true);
        assert!(taken.is_ok());
        assert_eq!(live.count("@standby"), (1, 1));
    }

    #[test]
    fn the_least_recently_used_idle_worker_gives_way() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let c = |tenant, busy, s| Candidate {
            tenant,
            busy,
            last_used: at(s),
        };
        let all = [
            c("a", false, 5),
            c("b", true, 1), // oldest, but busy
            c("a", false, 3),
            c("b", false, 4),
        ];
        assert_eq!(victim(&all, Full::All, "c"), Some(2));
        assert_eq!(victim(&all, Full::Tenant, "a"), Some(2));
        assert_eq!(victim(&all, Full::Tenant, "b"), Some(3));
        assert_eq!(
            victim(&all, Full::Tenant, "c"),
            None,
            "no worker of c to stop"
        );
        let busy = [c("a", true, 1), c("b", true, 2)];
        assert_eq!(victim(&busy, Full::All, "c"), None);
        assert_eq!(victim(&[], Full::All, "c"), None);
    }

    #[test]
    fn idleness() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert!(idle_past(false, t0, t0 + s(5), s(5)));
        assert!(!idle_past(false, t0, t0 + s(4), s(5)));
        assert!(!idle_past(true, t0, t0 + s(50), s(5)));
        assert!(
            !idle_past(false, t0 + s(9), t0, s(5)),
            "a clock read before last use"
        );
    }
}
