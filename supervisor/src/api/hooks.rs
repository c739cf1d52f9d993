//! The `Hooks` service: one agent event, fanned out to every valid hook plugin.
//!
//! **Order**: hook plugins run in name order (the plugins dir's folder names,
//! byte order), the same on every call.
//!
//! **Before a tool runs** (`tool_execute`) the hooks run one after another, each
//! seeing the arguments as the hooks before it left them: `proceed` passes them
//! on, `modify` replaces them (they must be JSON), `block` stops the chain — the
//! tool call is blocked with that reason and later hooks are `skipped`.
//!
//! **Other events** (`tool_complete`, `error`, `named`) go to every hook at once;
//! each answers `ok` or fails.
//!
//! **Failure** (the plugin's error value, a trap, a crash, no answer within
//! `hooks.deadline_ms`) is `failed` and listed in `errors`. It lets the event
//! proceed (fail open) unless the operator listed the plugin in
//! `hooks.fail_closed`; then it blocks, with the failure as the reason. A hook
//! that hangs or crashes costs the agent at most its deadline.

use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_proto::worker::v1 as wpb;
use tonic::{Request, Response, Status};

use super::{Api, tenant, unexpected};
use crate::plugins::manifest::PluginType;
use crate::plugins::registry::Plugin;

use wpb::invoke_request::Call;
use wpb::invoke_response::Outcome;

/// What one hook answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Proceed,
    Modify(String),
    Block(String),
    Ok,
    /// Why it failed, naming the plugin.
    Failed(String),
}

/// The outcome of one event, built hook by hook in order.
#[derive(Debug, Default)]
pub struct Chain {
    pub outcome: pb::HookOutcome,
}

impl Chain {
    fn new(arguments_json: String) -> Self {
        Self {
            outcome: pb::HookOutcome {
                arguments_json,
                ..Default::default()
            },
        }
    }

    /// Whether a hook has blocked: the hooks after it are skipped.
    pub fn blocked(&self) -> bool {
        self.outcome.blocked
    }

    /// Records a hook that did not run because an earlier one blocked.
    pub fn skip(&mut self, plugin: &str, fail_closed: bool) {
        self.record(plugin, "skipped", String::new(), fail_closed);
    }

    /// Folds one hook's verdict into the outcome (the rule in the module doc).
    pub fn apply(&mut self, plugin: &str, fail_closed: bool, verdict: Verdict) {
        match verdict {
            Verdict::Proceed => self.record(plugin, "proceed", String::new(), fail_closed),
            Verdict::Ok => self.record(plugin, "ok", String::new(), fail_closed),
            Verdict::Modify(args) => {
                self.outcome.arguments_json.clone_from(&args);
                self.record(plugin, "modify", args, fail_closed);
            }
            Verdict::Block(reason) => {
                self.block(format!("blocked by hook {plugin}: {reason}"));
                self.record(plugin, "block", reason, fail_closed);
            }
            Verdict::Failed(why) => {
                self.outcome.errors.push(why.clone());
                if fail_closed {
                    self.block(format!("hook {plugin} failed and fails closed: {why}"));
                }
                self.record(plugin, "failed", why, fail_closed);
            }
        }
    }

    fn block(&mut self, reason: String) {
        if !self.outcome.blocked {
            self.outcome.blocked = true;
            self.outcome.block_reason = reason;
        }
    }

    fn record(&mut self, plugin: &str, decision: &str, detail: String, fail_closed: bool) {
        self.outcome.results.push(pb::HookResult {
            plugin: plugin.to_owned(),
            decision: decision.to_owned(),
            detail,
            fail_closed,
        });
    }
}

#[tonic::async_trait]
impl pb::hooks_server::Hooks for Api {
    async fn dispatch_hook(
        &self,
        req: Request<pb::HookEvent>,
    ) -> Result<Response<pb::HookOutcome>, Status> {
        let tenant = tenant(&req)?;
        let req = req.into_inner();
        let event = req
            .event
            .ok_or_else(|| Status::invalid_argument("HookEvent carries no event"))?;
        let mut hooks = self.plugins_of(&tenant, PluginType::Hook);
        let hook = hook_name(&event).to_owned();
        let subscribes = |p: &Plugin| p.loaded.as_ref().is_none_or(|l| l.manifest.receives(&hook));
        if !req.plugin.is_empty() {
            hooks.retain(|p| p.id == req.plugin);
            let Some(p) = hooks.first() else {
                return Err(Status::not_found(format!(
                    "no hook plugin {:?} serves this tenant",
                    req.plugin
                )));
            };
            if !subscribes(p) {
                return Err(Status::failed_precondition(format!(
                    "hook plugin {} does not declare hook {hook:?}",
                    p.id
                )));
            }
        }
        // A plugin that declares its hooks receives only those.
        hooks.retain(|p| subscribes(p));
        let fail_closed = |p: &Plugin| self.0.config.hooks.fail_closed.contains(&p.id);
        use pb::hook_event::Event;
        let call = match event {
            Event::ToolExecute(e) => {
                if serde_json::from_str::<serde_json::Value>(&e.arguments_json).is_err() {
                    return Err(Status::invalid_argument(
                        "tool_execute.arguments_json is not JSON",
                    ));
                }
                let mut chain = Chain::new(e.arguments_json);
                for p in &hooks {
                    if chain.blocked() {
                        chain.skip(&p.id, fail_closed(p));
                        continue;
                    }
                    let call = Call::HookToolExecute(pb::ToolExecuteEvent {
                        tool: e.tool.clone(),
                        arguments_json: chain.outcome.arguments_json.clone(),
                    });
                    let verdict = self.ask(&tenant, p, &hook, call).await;
                    chain.apply(&p.id, fail_closed(p), verdict);
                }
                return Ok(Response::new(chain.outcome));
            }
            Event::ToolComplete(e) => Call::HookToolComplete(e),
            Event::Error(error) => Call::HookError(wpb::HookError { error }),
            Event::Named(e) => Call::HookNamed(e),
        };
        let verdicts = futures_util::future::join_all(
            hooks
                .iter()
                .map(|p| self.ask(&tenant, p, &hook, call.clone())),
        )
        .await;
        let mut chain = Chain::new(String::new());
        for (p, v) in hooks.iter().zip(verdicts) {
            chain.apply(&p.id, fail_closed(p), v);
        }
        Ok(Response::new(chain.outcome))
    }
}

/// tau's name for a hook event, the name hook plugins subscribe by (the worker
/// hands a tau extension the same one).
fn hook_name(event: &pb::hook_event::Event) -> &str {
    use pb::hook_event::Event;
    match event {
        Event::ToolExecute(_) => "pre-tool-call",
        Event::ToolComplete(_) => "post-tool-call",
        Event::Error(_) => "run-end",
        Event::Named(n) => &n.name,
    }
}

impl Api {
    /// A hook plugin's answer to a call for `hook` (tau's name): from its
    /// worker, or, for a tau process extension, from its program run in a jail.
    async fn answer(
        &self,
        tenant: &str,
        plugin: &Plugin,
        hook: &str,
        call: Call,
    ) -> Result<Outcome, Status> {
        let Some(loaded) = plugin.runnable() else {
            return self.call(tenant, plugin, call).await;
        };
        let id = &plugin.id;
        // tau's rule for either runtime, in tau's words.
        if let Some(why) = loaded.manifest.tau_refusal(hook) {
            let audit = &self.0.workers.authority.audit;
            audit.record(tenant, id, "run-commands", hook, "deny", &why);
            return Err(Status::permission_denied(format!("plugin {id}: {why}")));
        }
        let Some(program) = loaded.manifest.process.clone() else {
            return self.call(tenant, plugin, call).await;
        };
        let (name, version) = (&loaded.manifest.name, loaded.manifest.version.to_string());
        let request = tark_tau::request(&call, name, &version).ok_or_else(|| unexpected(id))?;
        let jail = self.0.workers.jail(tenant, plugin)?;
        let text =
            crate::commands::process::run(jail, tenant, plugin, &program, hook, &request).await?;
        match tark_tau::answer(&call, &text) {
            Ok(tark_tau::Answer::Decision(d)) => {
                Ok(Outcome::Decision(wpb::HookDecision { decision: Some(d) }))
            }
            Ok(tark_tau::Answer::Ack) => Ok(Outcome::Ack(wpb::Ack { error: None })),
            Ok(tark_tau::Answer::Failed(m)) => Err(Status::unknown(format!("plugin {id}: {m}"))),
            Err(e) => Err(Status::unknown(format!(
                "plugin {id}: hook {hook}: the extension process {e}"
            ))),
        }
    }

    /// One hook's answer to one event, within `hooks.deadline_ms`. Dropping the
    /// call at the deadline cuts it off in the worker.
    async fn ask(&self, tenant: &str, plugin: &Plugin, hook: &str, call: Call) -> Verdict {
        let ms = self.0.config.hooks.deadline_ms;
        let id = &plugin.id;
        let answer = tokio::time::timeout(
            Duration::from_millis(ms),
            self.answer(tenant, plugin, hook, call),
        )
        .await;
        use wpb::hook_decision::Decision;
        match answer {
            Err(_) => Verdict::Failed(format!("plugin {id}: no answer within {ms} ms")),
            Ok(Err(s)) => Verdict::Failed(s.message().to_owned()),
            Ok(Ok(Outcome::Decision(d))) => match d.decision {
                Some(Decision::Proceed(_)) => Verdict::Proceed,
                Some(Decision::BlockReason(r)) => Verdict::Block(r),
                Some(Decision::ModifyArgumentsJson(a)) => {
                    if serde_json::from_str::<serde_json::Value>(&a).is_ok() {
                        Verdict::Modify(a)
                    } else {
                        Verdict::Failed(format!("plugin {id}: modified arguments are not JSON"))
                    }
                }
                None => Verdict::Failed(unexpected(id).message().to_owned()),
            },
            Ok(Ok(Outcome::Ack(a))) => match a.error {
                None => Verdict::Ok,
                Some(e) => Verdict::Failed(format!("plugin {id}: {e}")),
            },
            Ok(Ok(_)) => Verdict::Failed(unexpected(id).message().to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(steps: &[(&str, bool, Verdict)]) -> pb::HookOutcome {
        let mut chain = Chain::new("{}".into());
        for (plugin, closed, v) in steps {
            if chain.blocked() {
                chain.skip(plugin, *closed);
            } else {
                chain.apply(plugin, *closed, v.clone());
            }
        }
        chain.outcome
    }

    fn decisions(o: &pb::HookOutcome) -> Vec<&str> {
        o.results.iter().map(|r| r.decision.as_str()).collect()
    }

    #[test]
    fn the_combination_rule() {
        use Verdict::*;
        let failed = || Failed("plugin x: boom".into());
        // (steps, blocked, reason, arguments, decisions, errors)
        type Case = (
            Vec<(&'static str, bool, Verdict)>,
            bool,
            &'static str,
            &'static str,
            Vec<&'static str>,
            usize,
        );
        let cases: Vec<Case> = vec![
            (vec![], false, "", "{}", vec![], 0),
            (
                vec![("a", false, Proceed), ("b", false, Proceed)],
                false,
                "",
                "{}",
                vec!["proceed", "proceed"],
                0,
            ),
            (
                vec![
                    ("a", false, Modify("{\"n\":1}".into())),
                    ("b", false, Modify("{\"n\":2}".into())),
                ],
                false,
                "",
                "{\"n\":2}",
                vec!["modify", "modify"],
                0,
            ),
            (
                vec![
                    ("a", false, Block("no".into())),
                    ("b", false, Modify("{\"n\":2}".into())),
                ],
                true,
                "blocked by hook a: no",
                "{}",
                vec!["block", "skipped"],
                0,
            ),
            (
                vec![
                    ("a", false, Modify("{\"n\":1}".into())),
                    ("b", false, Block("no".into())),
                    ("c", false, Proceed),
                ],
                true,
                "blocked by hook b: no",
                "{\"n\":1}",
                vec!["modify", "block", "skipped"],
                0,
            ),
            // Fail open: the failure is reported and the chain goes on.
            (
                vec![("a", false, failed()), ("b", false, Proceed)],
                false,
                "",
                "{}",
                vec!["failed", "proceed"],
                1,
            ),
            // Fail closed: the failure blocks.
            (
                vec![("a", true, failed()), ("b", false, Proceed)],
                true,
                "hook a failed and fails closed: plugin x: boom",
                "{}",
                vec!["failed", "skipped"],
                1,
            ),
            (
                vec![("a", false, Ok), ("b", false, failed())],
                false,
                "",
                "{}",
                vec!["ok", "failed"],
                1,
            ),
        ];
        for (steps, blocked, reason, args, want, errors) in cases {
            let o = run(&steps);
            assert_eq!(
                (
                    o.blocked,
                    o.block_reason.as_str(),
                    o.arguments_json.as_str(),
                    decisions(&o),
                    o.errors.len()
                ),
                (blocked, reason, args, want, errors),
                "{steps:?}"
            );
        }
    }
}
