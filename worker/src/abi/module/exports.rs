//! The exports tark's core-module ABI defines, their signatures, and which a
//! plugin type requires. Checked at load, before any guest code runs: a missing
//! required export, a known export with the wrong signature, or a `memory` that
//! is absent or shared is reported there with the name, not found mid-call.

use tark_proto::worker::v1 as pb;
use wasmtime::{ExternType, Module, ValType};

use crate::abi::Call;

/// `(name, signature)` of every export tarkd knows, `params->results`.
pub const KNOWN: &[(&str, &str)] = &[
    ("alloc", "i32->i32"),
    ("dealloc", "i32,i32->"),
    ("_initialize", "->"),
    // provider
    ("provider_info", "i32->i32"),
    ("provider_models", "i32->i32"),
    ("provider_auth_status", "->i32"),
    ("provider_auth_init", "i32,i32->i32"),
    ("provider_auth_logout", "->i32"),
    ("provider_auth_credentials", "i32->i32"),
    ("provider_chat", "i32,i32,i32,i32,i32->i32"),
    // auth (also found on providers)
    ("status", "->i32"),
    ("get_token", "i32->i32"),
    ("display_name", "i32->i32"),
    ("get_endpoint", "i32->i32"),
    ("init_with_credentials", "i32,i32->i32"),
    ("logout", "->i32"),
    ("auth_process_tokens", "i32,i32,i32->i32"),
    // channel
    ("channel_info", "i32->i32"),
    ("channel_start", "->i32"),
    ("channel_stop", "->i32"),
    ("channel_auth_status", "->i32"),
    ("channel_auth_init", "i32,i32->i32"),
    ("channel_auth_logout", "->i32"),
    ("channel_widget_state", "i32->i32"),
    ("channel_handle_webhook", "i32,i32,i32->i32"),
    ("channel_handle_gateway_event", "i32,i32,i32->i32"),
    ("channel_poll", "i32->i32"),
    ("channel_send", "i32,i32,i32->i32"),
    // tau extensions (hooks)
    ("tau_extension_alloc", "i32->i32"),
    ("tau_extension_invoke", "i32,i32->i64"),
];

/// What a plugin of each type must export (besides a private `memory`).
pub fn required(kind: pb::PluginKind) -> Result<&'static [&'static str], String> {
    Ok(match kind {
        pb::PluginKind::Provider => &[
            "alloc",
            "provider_info",
            "provider_models",
            "provider_auth_status",
        ],
        pb::PluginKind::Channel => &["alloc", "channel_info"],
        pb::PluginKind::Auth => &["alloc", "status"],
        pb::PluginKind::Hook => &["tau_extension_alloc", "tau_extension_invoke"],
        pb::PluginKind::Tool => {
            return Err("tark's core-module ABI defines no tool calls tarkd can host; build tool plugins as components against wit/tark.wit".into());
        }
        pb::PluginKind::Unspecified => return Err("no plugin type given".into()),
    })
}

fn name_of(t: &ValType) -> &'static str {
    match t {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::Ref(_) => "ref",
    }
}

/// A function type as `params->results`.
pub fn signature(ty: &wasmtime::FuncType) -> String {
    let list = |it: &mut dyn Iterator<Item = ValType>| {
        it.map(|t| name_of(&t)).collect::<Vec<_>>().join(",")
    };
    format!("{}->{}", list(&mut ty.params()), list(&mut ty.results()))
}

/// Checks a module against its plugin type; returns the known exports it has
/// (what `plugin info` shows as what the module provides), in [`KNOWN`] order.
pub fn check(module: &Module, kind: pb::PluginKind) -> Result<Vec<String>, String> {
    let required = required(kind)?;
    let mut problems = Vec::new();
    match module
        .exports()
        .find(|e| e.name() == "memory")
        .map(|e| e.ty())
    {
        Some(ExternType::Memory(m)) if m.is_shared() => {
            problems.push("its memory is shared; tarkd hosts only private memories".to_owned())
        }
        Some(ExternType::Memory(m)) if m.is_64() => {
            problems.push("its memory is 64-bit; tark's ABI is wasm32".to_owned())
        }
        Some(ExternType::Memory(_)) => {}
        _ => problems.push("it exports no memory named \"memory\"".to_owned()),
    }
    let mut found = Vec::new();
    for (name, want) in KNOWN {
        let Some(export) = module.exports().find(|e| e.name() == *name) else {
            continue;
        };
        match export.ty() {
            ExternType::Func(f) if signature(&f) == *want => found.push((*name).to_owned()),
            ExternType::Func(f) => problems.push(format!(
                "export {name} has signature {}, tark's ABI has {want}",
                signature(&f)
            )),
            _ => problems.push(format!("export {name} is not a function")),
        }
    }
    // A required export that is there but malformed was reported above.
    let absent = |name: &&&str| module.exports().all(|e| e.name() != **name);
    for name in required.iter().filter(absent) {
        problems.push(format!("it does not export {name}"));
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(format!(
            "not a usable tark {} core module: {}",
            kind_name(kind),
            problems.join("; ")
        ))
    }
}

/// The plugin type as the ABI's docs name it.
pub fn kind_name(kind: pb::PluginKind) -> &'static str {
    match kind {
        pb::PluginKind::Provider => "provider",
        pb::PluginKind::Channel => "channel",
        pb::PluginKind::Auth => "auth",
        pb::PluginKind::Hook => "hook, tau extension",
        pb::PluginKind::Tool => "tool",
        pb::PluginKind::Unspecified => "",
    }
}

/// How a call is answered for a plugin type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// By calling this export (a refusal names it when the module lacks it).
    Export(&'static str),
    /// By the worker itself (a stream emulated over `provider_chat`).
    Worker,
    /// Not at all: the ABI has nothing for it.
    Unserved,
}

/// Which export answers each of tarkd's calls, per plugin type.
pub fn route(kind: pb::PluginKind, call: &Call) -> Route {
    use pb::PluginKind as K;
    Route::Export(match (kind, call) {
        (K::Provider, Call::ProviderInfo(_)) => "provider_info",
        (K::Provider, Call::ListModels(_)) => "provider_models",
        (K::Provider, Call::AuthStatus(_)) => "provider_auth_status",
        (K::Provider, Call::Logout(_)) => "provider_auth_logout",
        (K::Provider, Call::AuthCredentials(_)) => "provider_auth_credentials",
        (K::Provider, Call::Chat(_) | Call::ChatStreamStart(_)) => "provider_chat",
        (K::Provider, Call::ChatStreamPoll(_) | Call::ChatStreamCancel(_)) => {
            return Route::Worker;
        }
        (K::Channel, Call::ChannelInfo(_)) => "channel_info",
        (K::Channel, Call::ChannelStart(_)) => "channel_start",
        (K::Channel, Call::ChannelStop(_)) => "channel_stop",
        (K::Channel, Call::ChannelWebhook(_)) => "channel_handle_webhook",
        (K::Channel, Call::ChannelGatewayEvent(_)) => "channel_handle_gateway_event",
        (K::Channel, Call::ChannelPoll(_)) => "channel_poll",
        (K::Channel, Call::ChannelSend(_)) => "channel_send",
        (K::Auth, Call::AuthStatus(_)) => "status",
        (K::Auth, Call::AuthDisplayName(_)) => "display_name",
        (K::Auth, Call::GetToken(_)) => "get_token",
        (K::Auth, Call::Logout(_)) => "logout",
        (K::Provider | K::Channel | K::Auth, Call::ProcessTokens(_)) => "auth_process_tokens",
        (
            K::Hook,
            Call::HookToolExecute(_)
            | Call::HookToolComplete(_)
            | Call::HookError(_)
            | Call::HookNamed(_),
        ) => "tau_extension_invoke",
        _ => return Route::Unserved,
    })
}

/// What a refusal for a missing export adds, for exports whose absence means
/// something to the caller.
const MISSING: &[(&str, &str)] = &[(
    "provider_chat",
    "; it is an auth-only provider: GetCredentials gives its credentials to the agent's own provider",
)];

/// The refusal for a call the module cannot answer.
pub fn refusal(kind: pb::PluginKind, call: &Call, route: Route) -> crate::abi::Failure {
    let name = crate::abi::call_name(call);
    let message = match route {
        Route::Export(export) => {
            let hint = MISSING
                .iter()
                .find(|(e, _)| *e == export)
                .map_or("", |(_, h)| h);
            format!("the module does not export {export}, so it cannot answer {name}{hint}")
        }
        _ => format!(
            "a tark core {} module has no export for {name}",
            kind_name(kind)
        ),
    };
    crate::abi::Failure::new(pb::FailureKind::WrongWorld, message)
}

/// Import modules a core module may use; anything else is refused at load.
pub fn check_imports(module: &Module) -> Result<(), String> {
    const MODULES: &[&str] = &[
        "tark:storage",
        "tark:http",
        "tark:env",
        "tark:fs",
        "tark:log",
        "tark:ws",
        crate::abi::wasi::refuse::P1_MODULE,
    ];
    let unknown: Vec<String> = module
        .imports()
        .filter(|i| !MODULES.contains(&i.module()))
        .map(|i| format!("{}::{}", i.module(), i.name()))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "it imports {}, which tarkd does not provide (tark's host modules are tark:storage, tark:http, tark:env, tark:fs, tark:log, tark:ws and wasi_snapshot_preview1)",
            unknown.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(wat: &str) -> Module {
        let engine = wasmtime::Engine::default();
        let bytes = wat::parse_str(wat).unwrap_or_default();
        Module::new(&engine, bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    const PROVIDER: &str = r#"(module
        (memory (export "memory") 1)
        (func (export "alloc") (param i32) (result i32) i32.const 8)
        (func (export "provider_info") (param i32) (result i32) i32.const 0)
        (func (export "provider_models") (param i32) (result i32) i32.const 0)
        (func (export "provider_auth_status") (result i32) i32.const 0)
        (func (export "provider_chat") (param i32 i32 i32 i32 i32) (result i32) i32.const 0))"#;

    #[test]
    fn a_provider_is_checked_and_its_exports_listed() {
        let found = check(&module(PROVIDER), pb::PluginKind::Provider);
        assert_eq!(
            found,
            Ok([
                "alloc",
                "provider_info",
                "provider_models",
                "provider_auth_status",
                "provider_chat"
            ]
            .map(String::from)
            .to_vec())
        );
        let as_channel = check(&module(PROVIDER), pb::PluginKind::Channel);
        assert!(as_channel.is_err_and(|e| e.contains("does not export channel_info")));
        let as_tool = check(&module(PROVIDER), pb::PluginKind::Tool);
        assert!(as_tool.is_err_and(|e| e.contains("no tool calls")));
    }

    #[test]
    fn bad_shapes_are_named() {
        let cases = [
            (
                r#"(module (func (export "alloc") (param i32) (result i32) i32.const 8)
                   (func (export "status") (result i32) i32.const 0))"#,
                "exports no memory",
            ),
            (
                r#"(module (memory (export "memory") 1)
                   (func (export "alloc") (param i64) (result i32) i32.const 8)
                   (func (export "status") (result i32) i32.const 0))"#,
                "export alloc has signature i64->i32, tark's ABI has i32->i32",
            ),
            (
                r#"(module (memory (export "memory") 1)
                   (global (export "alloc") i32 (i32.const 0))
                   (func (export "status") (result i32) i32.const 0))"#,
                "export alloc is not a function",
            ),
            (
                r#"(module (memory (export "memory") 1)
                   (func (export "status") (result i32) i32.const 0))"#,
                "does not export alloc",
            ),
        ];
        for (wat, want) in cases {
            let r = check(&module(wat), pb::PluginKind::Auth);
            assert!(r.as_ref().is_err_and(|e| e.contains(want)), "{want}: {r:?}");
        }
    }

    #[test]
    fn every_call_has_one_route() {
        use tark_proto::plugin::v1 as api;
        let n = || pb::Nothing {};
        let cases = [
            (
                pb::PluginKind::Provider,
                Call::ProviderInfo(n()),
                Route::Export("provider_info"),
            ),
            (
                pb::PluginKind::Provider,
                Call::ChatStreamStart(pb::Chat::default()),
                Route::Export("provider_chat"),
            ),
            (
                pb::PluginKind::Provider,
                Call::ChatStreamPoll(pb::StreamPoll::default()),
                Route::Worker,
            ),
            (
                pb::PluginKind::Provider,
                Call::ChannelPoll(n()),
                Route::Unserved,
            ),
            (
                pb::PluginKind::Auth,
                Call::Logout(n()),
                Route::Export("logout"),
            ),
            (
                pb::PluginKind::Provider,
                Call::Logout(n()),
                Route::Export("provider_auth_logout"),
            ),
            (
                pb::PluginKind::Auth,
                Call::StartDeviceFlow(n()),
                Route::Unserved,
            ),
            (
                pb::PluginKind::Channel,
                Call::ChannelSend(api::SendMessageRequest::default()),
                Route::Export("channel_send"),
            ),
            (
                pb::PluginKind::Hook,
                Call::HookError(pb::HookError::default()),
                Route::Export("tau_extension_invoke"),
            ),
            (
                pb::PluginKind::Tool,
                Call::ListTools(pb::ListTools {}),
                Route::Unserved,
            ),
            (
                pb::PluginKind::Channel,
                Call::ProcessTokens(pb::Text::default()),
                Route::Export("auth_process_tokens"),
            ),
            (
                pb::PluginKind::Hook,
                Call::ProcessTokens(pb::Text::default()),
                Route::Unserved,
            ),
        ];
        for (kind, call, want) in cases {
            assert_eq!(route(kind, &call), want, "{kind:?} {call:?}");
            if let Route::Export(e) = want {
                assert!(
                    KNOWN.iter().any(|(k, _)| *k == e),
                    "{e} is in the export table"
                );
            }
        }
        let chat = refusal(
            pb::PluginKind::Provider,
            &Call::Chat(pb::Chat::default()),
            Route::Export("provider_chat"),
        );
        assert!(
            chat.message
                .contains("cannot answer Chat; it is an auth-only provider")
        );
        let poll = refusal(
            pb::PluginKind::Auth,
            &Call::ChannelPoll(n()),
            Route::Unserved,
        );
        assert_eq!(
            poll.message,
            "a tark core auth module has no export for ChannelPoll"
        );
    }

    #[test]
    fn only_tarks_import_modules() {
        let ok = module(
            r#"(module (import "tark:log" "info" (func (param i32 i32)))
                (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))))"#,
        );
        assert_eq!(check_imports(&ok), Ok(()));
        let bad = module(r#"(module (import "env" "system" (func (param i32))))"#);
        assert!(check_imports(&bad).is_err_and(|e| e.contains("env::system")));
    }
}
