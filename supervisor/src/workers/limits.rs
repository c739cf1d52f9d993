//! The per-call limits a plugin runs under: tarkd's policy (`[limits]`), lowered
//! where the plugin's manifest asks for less (a tau extension's `timeout_ms`,
//! `fuel_limit`, `memory_limit_bytes`, `max_response_bytes`), never raised.

use tark_proto::worker::v1 as pb;

use crate::config::LimitsConfig;
use crate::plugins::manifest::Requested;

/// The limits a plugin's worker is loaded with.
pub fn effective(policy: &LimitsConfig, asked: &Requested) -> pb::Limits {
    let at_most = |policy: u64, asked: Option<u64>| asked.map_or(policy, |a| a.min(policy));
    pb::Limits {
        deadline_ms: at_most(policy.deadline_ms, asked.deadline_ms),
        memory_bytes: at_most(policy.memory_mib << 20, asked.memory_bytes),
        table_elements: policy.table_elements,
        instances: policy.instances,
        // 0 is "metering off", the widest budget: any request is lower.
        fuel: match (policy.fuel, asked.fuel) {
            (0, Some(a)) => a,
            (p, a) => at_most(p, a),
        },
        max_response_bytes: at_most(policy.max_response_kib << 10, asked.max_response_bytes),
        result_buffers: policy.result_buffers.clone(),
        idle_after_cpu_ms: policy.idle_after_cpu_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_lowers_limits_and_never_raises_them() {
        let policy = LimitsConfig {
            deadline_ms: 5_000,
            memory_mib: 64,
            fuel: 0,
            max_response_kib: 1024,
            ..LimitsConfig::default()
        };
        let metered = LimitsConfig {
            fuel: 1_000_000,
            ..policy.clone()
        };
        let none = Requested::default();
        let tau = Requested {
            deadline_ms: Some(1_500),
            fuel: Some(2_000_000),
            memory_bytes: Some(32 << 20),
            max_response_bytes: Some(256_000),
        };
        let greedy = Requested {
            deadline_ms: Some(60_000),
            fuel: None,
            memory_bytes: Some(1 << 40),
            max_response_bytes: Some(1 << 40),
        };
        // (policy, asked) → (deadline, memory, fuel, response)
        let cases = [
            (&policy, none, (5_000, 64 << 20, 0, 1 << 20)),
            (&policy, tau, (1_500, 32 << 20, 2_000_000, 256_000)),
            (&metered, tau, (1_500, 32 << 20, 1_000_000, 256_000)),
            (&policy, greedy, (5_000, 64 << 20, 0, 1 << 20)),
            (&metered, greedy, (5_000, 64 << 20, 1_000_000, 1 << 20)),
        ];
        for (policy, asked, want) in cases {
            let l = effective(policy, &asked);
            assert_eq!(
                (l.deadline_ms, l.memory_bytes, l.fuel, l.max_response_bytes),
                want,
                "{asked:?}"
            );
            assert_eq!(l.table_elements, policy.table_elements);
        }
    }
}
