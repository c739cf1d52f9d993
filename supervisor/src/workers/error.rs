//! How a call to a plugin fails, as the agent sees it: a status code, a
//! message naming the plugin, and the reason a client branches on.

use tonic::{Code, Status};

use crate::reasons::{self, Reason};

/// Why a call to a plugin failed, as the agent sees it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub code: Code,
    pub message: String,
    /// What a client branches on (sent as `google.rpc.ErrorInfo`).
    pub reason: Option<Reason>,
    /// The plugin the failure concerns, sent beside the reason.
    pub plugin: Option<String>,
}

impl CallError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            reason: None,
            plugin: None,
        }
    }

    /// The same error, with the reason a client branches on.
    pub(crate) fn because(mut self, reason: Reason, plugin: &str) -> Self {
        self.reason = Some(reason);
        self.plugin = Some(plugin.to_owned());
        self
    }
}

impl From<CallError> for Status {
    fn from(e: CallError) -> Self {
        match e.reason {
            Some(r) => reasons::status(e.code, e.message, r, e.plugin.as_deref(), None),
            None => Status::new(e.code, e.message),
        }
    }
}
