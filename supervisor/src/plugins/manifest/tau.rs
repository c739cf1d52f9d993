//! `[tau]`: a tau wasm extension's own limits, as its `extension.json` writes
//! them (`timeout_ms`, and under `wasm`: `fuel_limit`, `memory_limit_bytes`,
//! `max_response_bytes`). They become the plugin's requested limits, which
//! tarkd caps by its own policy (`workers::limits`). tau's capability modes
//! (`filesystem_mode`, `network_mode`, `env_allowlist`) are read: "deny" and
//! empty are what tarkd does anyway; anything wider is granted only through
//! `[capabilities]` and the operator's approval, and says so.

use serde::Deserialize;

/// Per-call limits a manifest asks for; `None`: tarkd's policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requested {
    pub deadline_ms: Option<u64>,
    pub fuel: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub max_response_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawTau {
    pub(super) timeout_ms: Option<u64>,
    pub(super) wasm: RawTauWasm,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawTauWasm {
    fuel_limit: Option<u64>,
    memory_limit_bytes: Option<u64>,
    max_response_bytes: Option<u64>,
    filesystem_mode: Option<String>,
    network_mode: Option<String>,
    env_allowlist: Vec<String>,
}

/// The requested limits; zeros are problems, wider capability modes warnings.
pub(super) fn validate(
    raw: RawTau,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Requested {
    let w = raw.wasm;
    for (key, value) in [
        ("tau.timeout_ms", raw.timeout_ms),
        ("tau.wasm.fuel_limit", w.fuel_limit),
        ("tau.wasm.memory_limit_bytes", w.memory_limit_bytes),
        ("tau.wasm.max_response_bytes", w.max_response_bytes),
    ] {
        if value == Some(0) {
            problems.push(format!("{key} must be positive"));
        }
    }
    for (key, mode) in [
        ("filesystem_mode", &w.filesystem_mode),
        ("network_mode", &w.network_mode),
    ] {
        if let Some(m) = mode.as_deref().filter(|m| *m != "deny") {
            warnings.push(format!(
                "tau.wasm.{key} {m:?} grants nothing by itself: tarkd grants only [capabilities] the operator approved"
            ));
        }
    }
    if !w.env_allowlist.is_empty() {
        warnings.push(format!(
            "tau.wasm.env_allowlist {:?} grants nothing by itself: declare [capabilities] env",
            w.env_allowlist
        ));
    }
    Requested {
        deadline_ms: raw.timeout_ms,
        fuel: w.fuel_limit,
        memory_bytes: w.memory_limit_bytes,
        max_response_bytes: w.max_response_bytes,
    }
}
