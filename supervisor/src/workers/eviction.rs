//! The worker manager's side of [`super::bounds`]: admitting a new worker under
//! the caps (stopping the least recently used idle one in scope to make room),
//! and stopping workers idle past `workers.idle_timeout_s`.
//!
//! A worker is stopped only while its slot's worker lock is held and the slot
//! has no call under way (calls count themselves in before they look for their
//! worker), so no call ever loses the worker it is using.

use std::sync::Arc;
use std::time::Instant;

use tonic::Code;

use super::bounds::{self, Candidate, Full, Ticket};
use super::slot::{Slot, Worker, WorkerKey};
use super::{CallError, EXIT_REPORT_WAIT, Workers};
use crate::reasons::Reason;

/// Times a start may find its room taken again before it gives up.
const ADMIT_TRIES: usize = 8;

impl Workers {
    /// A place for a new worker of `key`, making room if a cap is full.
    pub(super) async fn admit(&self, key: &WorkerKey) -> Result<Ticket, CallError> {
        let caps = &self.config.workers;
        let own = self
            .config
            .tenants
            .get(&key.tenant)
            .and_then(|t| t.max_live);
        let tenant_cap = own.unwrap_or(caps.max_live_per_tenant);
        let _waiting = self.standby.admitting();
        for _ in 0..ADMIT_TRIES {
            let full = match self.live.reserve(&key.tenant, caps, tenant_cap) {
                Ok(ticket) => return Ok(ticket),
                Err(full) => full,
            };
            // Standby workers give way first, one being started too.
            if full == Full::All {
                self.standby.started().await;
                if let Some(standby) = self.standby.give_way() {
                    standby.discard().await;
                    continue;
                }
            }
            let Some(stopped) = self.make_room(full, key) else {
                let why = match full {
                    Full::All => format!(
                        "tarkd runs its maximum of {} workers (workers.max_live)",
                        caps.max_live
                    ),
                    Full::Tenant => format!(
                        "tenant {} has its maximum of {tenant_cap} workers ({})",
                        key.tenant,
                        match own {
                            Some(_) => format!("tenants.{}.max_live", key.tenant),
                            None => "workers.max_live_per_tenant".to_owned(),
                        }
                    ),
                };
                return Err(CallError::new(
                    Code::ResourceExhausted,
                    format!(
                        "plugin {}: no worker can be started: {why}, all busy; retry when a call ends",
                        key.plugin
                    ),
                )
                .because(Reason::WorkersBusy, &key.plugin));
            };
            // Its place is given back once its process has exited.
            let _ = stopped.exit_reason(EXIT_REPORT_WAIT).await;
        }
        Err(CallError::new(
            Code::ResourceExhausted,
            format!(
                "plugin {}: no worker can be started: room made for it was taken by other starts",
                key.plugin
            ),
        )
        .because(Reason::WorkersBusy, &key.plugin))
    }

    /// Stops the least recently used idle worker in `full`'s scope (another
    /// tenant × plugin than `key`); the stopped worker, or `None` if every
    /// one in scope is busy.
    fn make_room(&self, full: Full, key: &WorkerKey) -> Option<Arc<Worker>> {
        let now = Instant::now();
        let slots = self.snapshot();
        // Each candidate's worker lock is held until the choice is made, so
        // no call can take up a worker between being judged idle and stopped.
        let mut held = Vec::new();
        for (k, slot) in &slots {
            if k == key {
                continue;
            }
            let Ok(guard) = slot.worker.try_lock() else {
                continue; // starting or stopping right now
            };
            if guard.as_ref().is_some_and(|w| !w.exited()) {
                held.push((k, slot, guard));
            }
        }
        let candidates: Vec<Candidate<'_>> = held
            .iter()
            .map(|(k, slot, _)| Candidate {
                tenant: &k.tenant,
                busy: slot.busy(),
                last_used: slot.last_used(now),
            })
            .collect();
        let i = bounds::victim(&candidates, full, &key.tenant)?;
        let (k, _, guard) = &mut held[i];
        let worker = guard.take()?;
        tracing::info!(
            tenant = %k.tenant,
            plugin = %k.plugin,
            "stopping the least recently used idle worker to make room for {}/{}",
            key.tenant,
            key.plugin
        );
        worker.stop();
        Some(worker)
    }

    /// Stops every worker idle past `workers.idle_timeout_s`, and forgets its
    /// slot (a healthy tenant × plugin's counters: what a plugin keeps is in
    /// storage), so slots do not pile up with tenants; how many it stopped.
    pub fn reap_idle(&self) -> usize {
        let Some(timeout) = self.config.workers.idle_timeout() else {
            return 0;
        };
        let now = Instant::now();
        let mut stopped = 0;
        for (k, slot) in self.snapshot() {
            let Ok(mut guard) = slot.worker.try_lock() else {
                continue;
            };
            let idle = guard.as_ref().is_some_and(|w| !w.exited())
                && bounds::idle_past(slot.busy(), slot.last_used(now), now, timeout);
            if let Some(w) = guard.take_if(|_| idle) {
                tracing::info!(tenant = %k.tenant, plugin = %k.plugin, pid = w.pid, "stopping idle worker");
                w.stop();
                stopped += 1;
                self.forget_if_idle(&k, &slot);
            }
        }
        stopped
    }

    /// Stops `key`'s worker if it has one and no call is under way (tarkd's
    /// own workers, done with their job); whether it did.
    pub async fn stop_idle(&self, key: &WorkerKey) -> bool {
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.get(key).cloned()
        };
        let Some(slot) = slot else {
            return false;
        };
        let mut guard = slot.worker.lock().await;
        if slot.busy() {
            return false;
        }
        match guard.take() {
            Some(w) => {
                w.stop();
                let _ = w.exit_reason(EXIT_REPORT_WAIT).await;
                true
            }
            None => false,
        }
    }

    /// Removes `slot` from the map unless a call has counted itself in (calls
    /// do so under the same lock) or it remembers crashes or a load failure.
    fn forget_if_idle(&self, key: &WorkerKey, slot: &Arc<Slot>) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let healthy = slot.load_error().is_none() && !slot.history().remembers_crashes();
        if !slot.busy() && healthy && slots.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            slots.remove(key);
        }
    }

    /// Every slot, outside the slots lock.
    fn snapshot(&self) -> Vec<(WorkerKey, Arc<Slot>)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .map(|(k, s)| (k.clone(), Arc::clone(s)))
            .collect()
    }
}
