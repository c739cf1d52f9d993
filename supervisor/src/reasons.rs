//! Why tarkd refused or failed a call, in a form a client can branch on.
//!
//! A status code says what kind of failure it was; several failures share a
//! code (a quarantined plugin and a restarting one are both `UNAVAILABLE`,
//! but only one is worth retrying soon). Each such error carries the standard
//! `google.rpc.ErrorInfo` detail (in `grpc-status-details-bin`, which every
//! gRPC library can decode): domain [`DOMAIN`], a stable [`Reason`], and the
//! plugin and capability it concerns as metadata. The message stays the
//! human-readable account; clients never need to parse it.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every reason tarkd gives.
pub const DOMAIN: &str = "tarkd";

/// A stable name for a failure; the strings are part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No plugin of that name is installed (`NOT_FOUND`).
    PluginNotFound,
    /// No installed plugin offers that tool (`NOT_FOUND`).
    ToolNotFound,
    /// More than one plugin offers that tool (`FAILED_PRECONDITION`).
    ToolConflict,
    /// The plugin is not of the kind the RPC calls (`FAILED_PRECONDITION`).
    WrongPluginType,
    /// The plugin is installed but cannot run: invalid, unapproved, or its
    /// module does not load (`FAILED_PRECONDITION`).
    PluginNotRunnable,
    /// The operator disabled the plugin (`FAILED_PRECONDITION`).
    PluginDisabled,
    /// Its signature does not verify, or it is unsigned where signatures are
    /// required (`FAILED_PRECONDITION`).
    PluginSignature,
    /// The tenant's settings do not include the plugin (`PERMISSION_DENIED`).
    PluginNotEnabledForTenant,
    /// The plugin answered with its own error (`UNKNOWN`).
    PluginError,
    /// Crashed too often; an operator must restart it (`UNAVAILABLE`).
    PluginQuarantined,
    /// Restarting after a crash; retry shortly (`UNAVAILABLE`).
    PluginRestarting,
    /// The plugin trapped or failed to instantiate (`ABORTED`).
    PluginTrapped,
    /// The plugin ran out of memory, tables or fuel (`RESOURCE_EXHAUSTED`).
    LimitExceeded,
    /// Its worker died during the call (`UNAVAILABLE`).
    WorkerExited,
    /// Every worker slot is busy (`RESOURCE_EXHAUSTED`).
    WorkersBusy,
    /// The caller has as many long-lived calls open as it may
    /// (`RESOURCE_EXHAUSTED`).
    CallerOverLimit,
    /// The request message does not decode (`INVALID_ARGUMENT`).
    BadRequest,
    /// The plugin's answer is larger than `limits.max_response_kib`
    /// (`RESOURCE_EXHAUSTED`).
    ResponseTooLarge,
    /// A request or response over `api.max_message_bytes`
    /// (`RESOURCE_EXHAUSTED`).
    MessageTooLarge,
    /// The call's deadline passed (`DEADLINE_EXCEEDED`).
    DeadlineExceeded,
    /// A sandbox layer the config requires is missing (`FAILED_PRECONDITION`).
    SandboxIncomplete,
    /// The caller is no configured principal (`UNAUTHENTICATED`).
    CallerUnknown,
    /// The caller may not make this call, or not for that tenant
    /// (`PERMISSION_DENIED`).
    CallerNotAllowed,
    /// A host call outside the plugin's grant (`PERMISSION_DENIED`).
    CapabilityDenied,
}

impl Reason {
    /// The `ErrorInfo.reason` string (UPPER_SNAKE_CASE, as AIP-193 asks).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PluginNotFound => "PLUGIN_NOT_FOUND",
            Reason::ToolNotFound => "TOOL_NOT_FOUND",
            Reason::ToolConflict => "TOOL_CONFLICT",
            Reason::WrongPluginType => "WRONG_PLUGIN_TYPE",
            Reason::PluginNotRunnable => "PLUGIN_NOT_RUNNABLE",
            Reason::PluginDisabled => "PLUGIN_DISABLED",
            Reason::PluginSignature => "PLUGIN_SIGNATURE",
            Reason::PluginNotEnabledForTenant => "PLUGIN_NOT_ENABLED_FOR_TENANT",
            Reason::PluginError => "PLUGIN_ERROR",
            Reason::PluginQuarantined => "PLUGIN_QUARANTINED",
            Reason::PluginRestarting => "PLUGIN_RESTARTING",
            Reason::PluginTrapped => "PLUGIN_TRAPPED",
            Reason::LimitExceeded => "PLUGIN_LIMIT_EXCEEDED",
            Reason::WorkerExited => "WORKER_EXITED",
            Reason::WorkersBusy => "WORKERS_BUSY",
            Reason::CallerOverLimit => "CALLER_OVER_LIMIT",
            Reason::BadRequest => "BAD_REQUEST",
            Reason::ResponseTooLarge => "RESPONSE_TOO_LARGE",
            Reason::MessageTooLarge => "MESSAGE_TOO_LARGE",
            Reason::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Reason::SandboxIncomplete => "SANDBOX_INCOMPLETE",
            Reason::CallerUnknown => "CALLER_UNKNOWN",
            Reason::CallerNotAllowed => "CALLER_NOT_ALLOWED",
            Reason::CapabilityDenied => "CAPABILITY_DENIED",
        }
    }
}

/// A status with `reason`'s ErrorInfo, naming the plugin and capability
/// where there is one.
pub fn status(
    code: Code,
    message: impl Into<String>,
    reason: Reason,
    plugin: Option<&str>,
    capability: Option<&str>,
) -> Status {
    let mut metadata = HashMap::new();
    if let Some(p) = plugin {
        metadata.insert("plugin".to_owned(), p.to_owned());
    }
    if let Some(c) = capability {
        metadata.insert("capability".to_owned(), c.to_owned());
    }
    let details = ErrorDetails::with_error_info(reason.as_str(), DOMAIN, metadata);
    Status::with_error_details(code, message, details)
}

/// The longest status message tarkd sends, in characters. A message can
/// quote what a caller or a plugin sent (a tool name, a path); unbounded, a
/// 38 KB path made the status header larger than the peer's header list
/// limit and the call ended in an HTTP/2 protocol error instead of the
/// refusal.
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// The same response with its `grpc-message` cut to [`MAX_MESSAGE_CHARS`]
/// (marked `… (N bytes)`); any other response unchanged.
pub fn bound_message<B>(mut response: http::Response<B>) -> http::Response<B> {
    let long = response
        .headers()
        .get("grpc-message")
        .is_some_and(|v| v.len() > MAX_MESSAGE_CHARS);
    if !long {
        return response;
    }
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let message = cut(status.message());
    let bounded = Status::with_details(status.code(), message, status.details().to_vec().into());
    if let Some(v) = bounded.into_http::<()>().headers().get("grpc-message") {
        response.headers_mut().insert("grpc-message", v.clone());
    }
    response
}

/// `text` cut to [`MAX_MESSAGE_CHARS`] characters, saying how long it was.
pub fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}… ({} bytes)", &text[..at], text.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character() {
        let long = format!("path {:?} is refused", "é/".repeat(20_000));
        let r = bound_message(Status::invalid_argument(long.clone()).into_http::<()>());
        let header = r.headers().get("grpc-message").map_or(0, |v| v.len());
        assert!(header < 4 * MAX_MESSAGE_CHARS, "{header}");
        let back = Status::from_header_map(r.headers());
        let msg = back
            .as_ref()
            .map(|s| s.message().to_owned())
            .unwrap_or_default();
        assert!(msg.starts_with("path \"é/é/"), "{msg}");
        assert!(msg.ends_with(&format!("… ({} bytes)", long.len())), "{msg}");
        assert_eq!(back.map(|s| s.code()), Some(Code::InvalidArgument));
        // Details survive; short messages are left alone.
        let with = status(
            Code::PermissionDenied,
            "x".repeat(5000),
            Reason::CapabilityDenied,
            Some("p"),
            None,
        );
        let r = bound_message(with.into_http::<()>());
        let back = Status::from_header_map(r.headers())
            .ok_or("no status")
            .map(|s| s.get_details_error_info());
        assert!(matches!(back, Ok(Some(i)) if i.reason == "CAPABILITY_DENIED"));
        let short = Status::not_found("short").into_http::<()>();
        let same = bound_message(Status::not_found("short").into_http::<()>());
        assert_eq!(short.headers(), same.headers());
    }

    #[test]
    fn a_status_carries_its_reason_plugin_and_capability() -> Result<(), &'static str> {
        let s = status(
            Code::PermissionDenied,
            "no",
            Reason::CapabilityDenied,
            Some("notes"),
            Some("http"),
        );
        assert_eq!((s.code(), s.message()), (Code::PermissionDenied, "no"));
        let info = s.get_details_error_info().ok_or("no ErrorInfo")?;
        assert_eq!(info.reason, "CAPABILITY_DENIED");
        assert_eq!(info.domain, DOMAIN);
        assert_eq!(
            info.metadata.get("plugin").map(String::as_str),
            Some("notes")
        );
        assert_eq!(
            info.metadata.get("capability").map(String::as_str),
            Some("http")
        );
        let bare = status(Code::NotFound, "x", Reason::ToolNotFound, None, None);
        assert!(
            bare.get_details_error_info()
                .is_some_and(|i| i.metadata.is_empty())
        );
        Ok(())
    }
}
