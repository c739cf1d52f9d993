//! One call to a plugin: its worker started if need be, the call raced
//! against the plugin's deadline and the worker's exit, and the answer
//! checked on receipt (size, failure kind) before the agent sees it.

use std::time::{Duration, Instant};

use tark_proto::worker::v1 as pb;
use tonic::Code;

use super::{CallError, EXIT_REPORT_WAIT, WorkerKey, Workers, backstop, limits, window};
use crate::metrics::{METRICS, Metrics};
use crate::plugins::registry::Plugin;
use crate::reasons::Reason;

impl Workers {
    /// Makes one call to a plugin for a tenant, starting its worker if need be.
    pub async fn call(
        &self,
        tenant: &str,
        plugin: &Plugin,
        call: pb::invoke_request::Call,
    ) -> Result<pb::invoke_response::Outcome, CallError> {
        self.call_within(tenant, plugin, call, None).await
    }

    /// [`Self::call`], its worker killed if it has not answered within
    /// `limit` (instead of its deadline and the kill grace).
    pub async fn call_within(
        &self,
        tenant: &str,
        plugin: &Plugin,
        call: pb::invoke_request::Call,
        limit: Option<Duration>,
    ) -> Result<pb::invoke_response::Outcome, CallError> {
        self.enabled_for(tenant, plugin)?;
        let key = WorkerKey {
            tenant: tenant.to_owned(),
            plugin: plugin.id.clone(),
        };
        let (slot, _in_use) = self.slot_in_use(&key);
        let worker = self.ensure_worker(&key, &slot, plugin).await?;
        slot.stats().calls += 1;
        let started = Instant::now();

        let deadline_ms = plugin
            .runnable()
            .map_or(self.config.limits.deadline_ms, |l| {
                limits::effective(&self.config.limits, &l.manifest.limits).deadline_ms
            });
        let limit = limit.unwrap_or_else(|| {
            Duration::from_millis(deadline_ms + self.config.limits.kill_grace_ms)
        });
        let mut client = worker.client.clone();
        let request = pb::InvokeRequest { call: Some(call) };
        let size = prost::Message::encoded_len(&request);
        // The window is never closed; were it, the worker would be gone.
        let sent = worker.window.enter(size).await.map_err(|_| {
            CallError::new(
                Code::Unavailable,
                format!("worker for plugin {} is gone", plugin.id),
            )
        })?;
        let mut answers = worker.window.answers();
        // Behind at most the rest of the window, each within its limit.
        let most = limit.saturating_mul(window::WINDOW);
        // A worker whose process ended fails the call at once, even if something
        // (an orphan of a kill racing its start) still holds the other end of
        // its channel: that leftover is killed with the worker's process group.
        let mut exited = worker.exit.clone();
        let grace = Duration::from_millis(self.config.limits.kill_grace_ms);
        let result = tokio::select! {
            r = backstop::within((limit, most), grace, &mut answers, client.invoke(request)) => r,
            _ = exited.wait_for(Option::is_some) => {
                worker.kill();
                Ok(Err(tonic::Status::unavailable("the worker exited")))
            }
        };
        if result.is_ok() {
            worker.window.answered();
        }
        drop(sent);
        let id = &plugin.id;
        let outcome = match result {
            Err(_) => {
                // The worker ignored its own deadline: it is stuck or compromised.
                worker.kill();
                let msg = format!(
                    "plugin {id} did not answer within {} ms; its worker was killed",
                    limit.as_millis()
                );
                Err(CallError::new(Code::DeadlineExceeded, msg)
                    .because(Reason::DeadlineExceeded, id))
            }
            Ok(Err(status)) => {
                Metrics::plugin_event(&METRICS.worker_crashes, id);
                let reason = match worker.exit_reason(EXIT_REPORT_WAIT).await {
                    Some(r) => r,
                    None => {
                        worker.kill();
                        format!("its channel failed ({})", status.message())
                    }
                };
                Err(CallError::new(
                    Code::Unavailable,
                    format!("worker for plugin {id} exited: {reason}"),
                )
                .because(Reason::WorkerExited, id))
            }
            Ok(Ok(resp)) => {
                match check_size(id, resp.into_inner(), self.max_response_bytes())?.outcome {
                    Some(pb::invoke_response::Outcome::Failure(f)) => Err(failure_to_error(id, &f)),
                    Some(o) => {
                        slot.history().succeeded();
                        Ok(o)
                    }
                    None => Err(CallError::new(
                        Code::Internal,
                        format!("plugin {id}: worker sent an empty answer"),
                    )),
                }
            }
        };
        if let Err(e) = &outcome {
            slot.stats().last_error = e.message.clone();
        }
        let code = outcome.as_ref().map_or_else(|e| e.code, |_| Code::Ok);
        METRICS.plugin_call(id, code, started.elapsed());
        outcome
    }
}

/// The worker caps its answers; tarkd checks again on receipt, because a
/// compromised worker would not.
fn check_size(
    plugin: &str,
    reply: pb::InvokeResponse,
    limit: usize,
) -> Result<pb::InvokeResponse, CallError> {
    use prost::Message;
    let size = reply.encoded_len();
    if size > limit {
        return Err(CallError::new(
            Code::ResourceExhausted,
            format!("plugin {plugin}: response of {size} bytes exceeds the limit of {limit} bytes"),
        )
        .because(Reason::ResponseTooLarge, plugin));
    }
    Ok(reply)
}

/// Maps a worker's failure report to the agent's status code.
fn failure_to_error(plugin: &str, f: &pb::Failure) -> CallError {
    use pb::FailureKind as K;
    let (code, reason) = match K::try_from(f.kind).unwrap_or(K::Unspecified) {
        K::Deadline => (Code::DeadlineExceeded, Reason::DeadlineExceeded),
        K::MemoryLimit | K::TableLimit | K::Fuel => {
            (Code::ResourceExhausted, Reason::LimitExceeded)
        }
        K::ResponseTooLarge => (Code::ResourceExhausted, Reason::ResponseTooLarge),
        K::WrongWorld | K::NotLoaded => (Code::FailedPrecondition, Reason::PluginNotRunnable),
        K::BadRequest => (Code::InvalidArgument, Reason::PluginError),
        K::Trap | K::Instantiate => (Code::Aborted, Reason::PluginTrapped),
        K::Unspecified => (Code::Unknown, Reason::PluginError),
    };
    CallError::new(code, format!("plugin {plugin}: {}", f.message)).because(reason, plugin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_answers_are_refused_on_receipt() {
        let reply = |text: &str| pb::InvokeResponse {
            outcome: Some(pb::invoke_response::Outcome::ToolResult(pb::ToolResult {
                result: Some(pb::tool_result::Result::Success(text.to_owned())),
            })),
        };
        assert!(check_size("p", reply("small"), 64).is_ok());
        let err = check_size("p", reply(&"x".repeat(100)), 64).err();
        assert_eq!(err.as_ref().map(|e| e.code), Some(Code::ResourceExhausted));
        assert!(err.is_some_and(|e| e.message.starts_with("plugin p: response of 10")));
    }

    #[test]
    fn failures_map_to_status_codes() {
        use pb::FailureKind as K;
        let cases = [
            (K::Deadline, Code::DeadlineExceeded),
            (K::MemoryLimit, Code::ResourceExhausted),
            (K::Fuel, Code::ResourceExhausted),
            (K::ResponseTooLarge, Code::ResourceExhausted),
            (K::Trap, Code::Aborted),
            (K::WrongWorld, Code::FailedPrecondition),
            (K::BadRequest, Code::InvalidArgument),
        ];
        for (kind, code) in cases {
            let e = failure_to_error(
                "p",
                &pb::Failure {
                    kind: kind as i32,
                    message: "m".into(),
                },
            );
            assert_eq!(
                (e.code, e.message.as_str()),
                (code, "plugin p: m"),
                "{kind:?}"
            );
        }
    }
}
