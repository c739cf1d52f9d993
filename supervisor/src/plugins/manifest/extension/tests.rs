use super::*;
use serde_json::json as j;

/// tau's guide's wasm extension, with `over` merged into it.
fn ext(over: serde_json::Value) -> String {
    let mut v = serde_json::json!({
        "schema_version": 1,
        "id": "wasm-assistant",
        "version": "0.1.0",
        "runtime": "wasm",
        "entrypoint": "hook.wasm",
        "hooks": ["run-start"],
        "permissions": ["run-commands"],
        "wasm": {
            "fuel_limit": 500000,
            "memory_limit_bytes": 131072,
            "max_response_bytes": 4096,
            "filesystem_mode": "deny",
            "network_mode": "deny"
        }
    });
    if let (Some(base), Some(over)) = (v.as_object_mut(), over.as_object()) {
        for (k, x) in over {
            if x.is_null() {
                base.remove(k);
            } else {
                base.insert(k.clone(), x.clone());
            }
        }
    }
    v.to_string()
}

#[test]
fn tau_guides_wasm_extension_is_a_hook_plugin() {
    let m = parse(&ext(serde_json::json!({})), "wasm-assistant").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.name, "wasm-assistant");
    assert_eq!(m.version, semver::Version::new(0, 1, 0));
    assert_eq!(m.plugin_type, PluginType::Hook);
    assert_eq!(m.wasm, "hook.wasm");
    assert_eq!(m.activation, ["onHook:run-start"]);
    assert_eq!(m.capabilities, Capabilities::default());
    assert_eq!(m.limits.deadline_ms, Some(5_000));
    assert_eq!(m.limits.fuel, Some(500_000));
    assert_eq!(m.limits.memory_bytes, Some(131_072));
    assert_eq!(m.limits.max_response_bytes, Some(4096));
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
}

#[test]
fn refusals_name_the_field() {
    for (over, problem) in [
        (
            j!({"schema_version": 9}),
            "unsupported extension manifest schema",
        ),
        (j!({"schema_version": null}), "schema_version is required"),
        (j!({"id": null}), "id is required"),
        (j!({"id": "Wasm_Assistant"}), "must be lowercase"),
        (j!({"id": "other"}), "does not match its folder"),
        (j!({"version": null}), "version is required"),
        (j!({"version": "1"}), "version is not semver"),
        (j!({"runtime": "python"}), "unsupported extension runtime"),
        (j!({"runtime": null}), "runtime is required"),
        (j!({"entrypoint": ""}), "entrypoint must not be empty"),
        (
            j!({"entrypoint": "../escape.wasm"}),
            "must not contain parent traversals",
        ),
        (
            j!({"entrypoint": "a/../../x.wasm"}),
            "must not contain parent traversals",
        ),
        (j!({"entrypoint": "/bin/hook.wasm"}), "must be relative"),
        (j!({"entrypoint": "./"}), "names no file"),
        (
            j!({"hooks": ["run-start", "run-start"]}),
            "'hooks' contains duplicate entries",
        ),
        (
            j!({"hooks": ["on-start"]}),
            "unsupported extension hooks entry \"on-start\"",
        ),
        (
            j!({"permissions": ["sudo"]}),
            "unsupported extension permissions entry",
        ),
        (
            j!({"permissions": ["network", "network"]}),
            "'permissions' contains duplicate",
        ),
        (j!({"timeout_ms": 0}), "tau.timeout_ms must be positive"),
        (j!({"timeout_ms": 300001}), "'timeout_ms' must be <= 300000"),
        (
            j!({"wasm": {"fuel_limit": 0}}),
            "tau.wasm.fuel_limit must be positive",
        ),
        (
            j!({"wasm": {"memory_limit_bytes": 0}}),
            "memory_limit_bytes must be positive",
        ),
        (
            j!({"wasm": {"max_response_bytes": 0}}),
            "max_response_bytes must be positive",
        ),
    ] {
        let err = parse(&ext(over.clone()), "wasm-assistant").err();
        assert!(
            err.as_ref()
                .is_some_and(|e| e.to_string().contains(problem)),
            "{over}: {err:?}, wanted {problem:?}"
        );
    }
    for bad in ["", "[]", "{\"id\": 1}", "not json"] {
        let err = parse(bad, "wasm-assistant").err();
        assert!(
            err.is_some_and(|e| e.to_string().starts_with("extension.json: ")),
            "{bad}"
        );
    }
}

#[test]
fn what_grants_nothing_is_reported() {
    for (over, warning) in [
        (
            j!({"permissions": ["network"]}),
            "permission \"network\" grants nothing",
        ),
        (
            j!({"permissions": ["read-files", "run-commands"]}),
            "permission \"read-files\"",
        ),
        (
            j!({"wasm": {"network_mode": "allow"}}),
            "tau.wasm.network_mode \"allow\" grants nothing",
        ),
        (
            j!({"wasm": {"filesystem_mode": "read-only"}}),
            "filesystem_mode \"read-only\"",
        ),
        (j!({"wasm": {"env_allowlist": ["HOME"]}}), "env_allowlist"),
        (
            j!({"tools": [{"name": "t"}]}),
            "1 tools and 0 commands are not served",
        ),
        (j!({"colour": "blue"}), "unknown field \"colour\""),
    ] {
        let m =
            parse(&ext(over.clone()), "wasm-assistant").unwrap_or_else(|e| panic!("{over}: {e}"));
        assert!(
            m.warnings.iter().any(|w| w.contains(warning)),
            "{over}: {:?}, wanted {warning:?}",
            m.warnings
        );
        assert_eq!(m.capabilities, Capabilities::default(), "{over}");
    }
}

#[test]
fn defaults_and_paths_as_tau_has_them() {
    let m = parse(&ext(j!({"hooks": null, "permissions": null, "wasm": null, "entrypoint": "./dist/hook.wasm"})), "wasm-assistant")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.wasm, "dist/hook.wasm");
    assert!(m.activation.is_empty());
    assert_eq!(m.limits.deadline_ms, Some(TIMEOUT_MS_DEFAULT));
    assert_eq!(m.limits.fuel, None);
    let all = parse(&ext(j!({"hooks": HOOKS})), "wasm-assistant").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.activation.len(), HOOKS.len());
}

#[test]
fn it_receives_the_hooks_it_declares_and_no_others() {
    let m = parse(
        &ext(j!({"hooks": ["run-start", "pre-tool-call"]})),
        "wasm-assistant",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for (hook, receives) in [
        ("run-start", true),
        ("pre-tool-call", true),
        ("run-end", false),
        ("post-tool-call", false),
        ("message-transform", false),
        ("policy-override", false),
        ("session-start", false),
    ] {
        assert_eq!(m.receives(hook), receives, "{hook}");
    }
    let none = parse(&ext(j!({"hooks": []})), "wasm-assistant").unwrap_or_else(|e| panic!("{e}"));
    assert!(HOOKS.iter().all(|h| !none.receives(h)));
}

#[test]
fn a_process_extension_runs_its_program_behind_the_shell_gate() {
    let m = parse(
        &ext(j!({"runtime": "process", "entrypoint": "./bin/runtime.sh"})),
        "wasm-assistant",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.process.as_deref(), Some("bin/runtime.sh"));
    assert_eq!(m.wasm, "");
    assert!(
        m.capabilities.shell,
        "run-commands declares the shell capability"
    );
    assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    let ungated = parse(
        &ext(j!({"runtime": "process", "permissions": []})),
        "wasm-assistant",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!ungated.capabilities.shell);
    assert!(
        ungated
            .warnings
            .iter()
            .any(|w| w.contains("runs none of its hooks"))
    );
    let wasm = parse(&ext(j!({})), "wasm-assistant").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !wasm.capabilities.shell,
        "run-commands grants a wasm extension nothing"
    );
    assert_eq!(wasm.process, None);
}
