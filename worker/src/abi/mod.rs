//! Plugin ABIs the worker hosts. Each turns a [`Call`] into guest calls and the
//! guest's answer into an [`Outcome`] behind one trait, [`Plugin`]: the worker
//! service does not care which ABI or world a plugin uses.

pub mod component;
pub mod host;
pub mod module;
pub mod runner;
pub mod wasi;

use std::pin::Pin;

use tark_proto::worker::v1 as pb;

/// A call tarkd asked the worker to make.
pub type Call = pb::invoke_request::Call;
/// A successful answer to a [`Call`].
pub type Outcome = pb::invoke_response::Outcome;

/// A call in progress.
pub type Invocation<'a> = Pin<Box<dyn Future<Output = Result<Outcome, Failure>> + Send + 'a>>;

/// A loaded plugin, whatever its ABI and world.
pub trait Plugin: Send {
    /// Runs one call under the plugin's limits. Dropping the future part-way
    /// (the caller went away) leaves the plugin able to take the next call.
    fn invoke(&mut self, call: Call) -> Invocation<'_>;
}

/// A plugin's own error value (`result<T, string>`, or an error an export
/// returned) as the answer to a call.
pub fn plugin_error(message: String) -> Outcome {
    Outcome::PluginError(pb::PluginError { message })
}

/// A call's name (its variant, e.g. `ChatStreamStart`), for refusals.
pub fn call_name(call: &Call) -> String {
    let name = format!("{call:?}");
    name.split('(').next().unwrap_or("call").to_owned()
}

/// Why a call produced no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: pb::FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: pb::FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// Whether the guest instance is unusable after this failure and must be
    /// replaced before the next call.
    pub fn poisons_instance(&self) -> bool {
        !matches!(
            self.kind,
            pb::FailureKind::ResponseTooLarge
                | pb::FailureKind::BadRequest
                | pb::FailureKind::WrongWorld
                | pb::FailureKind::NotLoaded
        )
    }
}

impl From<Failure> for pb::Failure {
    fn from(f: Failure) -> Self {
        pb::Failure {
            kind: f.kind as i32,
            message: f.message,
        }
    }
}
