//! Why an outbound request was not answered: one kind per status the plugin
//! gets, shared by the request path and the client pool.

use crate::broker::hosts::Refusal;

/// Why a request was not answered; each kind becomes its own status for the
/// plugin, and `Denied` is also audited.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Failed(String),
}

impl From<Refusal> for HttpError {
    fn from(r: Refusal) -> Self {
        HttpError::Denied(r.0)
    }
}
