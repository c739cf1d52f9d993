//! Per-store resource limits, and which of them a failed call ran into.

use wasmtime::ResourceLimiter;

/// A `StoreLimits` that remembers *which* limit stopped the guest, so the caller
/// gets "memory limit of 64 MiB exceeded" rather than a bare trap.
#[derive(Debug, Clone)]
pub struct Limiter {
    memory_bytes: usize,
    table_elements: usize,
    instances: usize,
    /// Set when a grow was refused; cleared at the start of each call.
    pub hit: Option<LimitHit>,
}

/// A limit a guest ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    Memory { requested: usize, limit: usize },
    Table { requested: usize, limit: usize },
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            LimitHit::Memory { requested, limit } => write!(
                f,
                "memory limit of {limit} bytes exceeded (the plugin asked for {requested} bytes)"
            ),
            LimitHit::Table { requested, limit } => write!(
                f,
                "table limit of {limit} elements exceeded (the plugin asked for {requested})"
            ),
        }
    }
}

impl Limiter {
    pub fn new(memory_bytes: usize, table_elements: usize, instances: usize) -> Self {
        Self {
            memory_bytes,
            table_elements,
            instances,
            hit: None,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            let hit = LimitHit::Memory {
                requested: desired,
                limit: self.memory_bytes,
            };
            self.hit = Some(hit);
            // An error (not `Ok(false)`) traps the guest: a plugin that ignores a
            // failed `memory.grow` must not keep running on a limit it cannot see.
            return Err(wasmtime::Error::msg(hit.to_string()));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            let hit = LimitHit::Table {
                requested: desired,
                limit: self.table_elements,
            };
            self.hit = Some(hit);
            return Err(wasmtime::Error::msg(hit.to_string()));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.instances.saturating_mul(4).max(1)
    }

    fn memories(&self) -> usize {
        self.instances
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_within_limit_is_allowed_and_beyond_is_recorded() {
        let mut l = Limiter::new(1 << 20, 100, 1);
        assert!(l.memory_growing(0, 1 << 20, None).is_ok_and(|ok| ok));
        assert!(l.hit.is_none());
        assert!(l.memory_growing(0, (1 << 20) + 1, None).is_err());
        assert_eq!(
            l.hit,
            Some(LimitHit::Memory {
                requested: (1 << 20) + 1,
                limit: 1 << 20
            })
        );
    }

    #[test]
    fn table_beyond_limit_is_recorded() {
        let mut l = Limiter::new(1 << 20, 10, 1);
        assert!(l.table_growing(0, 10, None).is_ok_and(|ok| ok));
        assert!(l.table_growing(10, 11, None).is_err());
        assert_eq!(
            l.hit,
            Some(LimitHit::Table {
                requested: 11,
                limit: 10
            })
        );
    }
}
