//! `[hooks]` and `[channels]`: how tarkd runs the hook and channel plugins
//! the agent API drives.

use serde::Deserialize;

/// `[hooks]` in tarkd's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksConfig {
    /// Each hook's time for one event.
    pub deadline_ms: u64,
    /// Hook plugins whose failure blocks instead of letting the event proceed.
    pub fail_closed: Vec<String>,
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            deadline_ms: 2_000,
            fail_closed: Vec::new(),
        }
    }
}

/// `[channels]` in tarkd's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsConfig {
    pub poll_interval_ms: u64,
    /// Inbound messages kept per channel while no subscriber takes them.
    pub buffer: usize,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1_000,
            buffer: 1_000,
        }
    }
}
