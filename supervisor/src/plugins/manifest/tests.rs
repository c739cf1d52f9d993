//! The manifest tables: what loads, what is refused and why, what warns.

use super::*;

fn host() -> semver::Version {
    semver::Version::new(0, 5, 0)
}

fn manifest(plugin: &str, caps: &str) -> String {
    format!("[plugin]\n{plugin}\n[capabilities]\n{caps}\n")
}

const OK: &str = "name = \"my-plugin\"\nversion = \"1.0.0\"\ntype = \"tool\"";

#[test]
fn a_manifest_written_like_tarks_published_ones_loads_without_warnings() {
    let text = r#"
# an auth-only provider, laid out as tark's published plugins are
[plugin]
name = "my-plugin"
version = "0.2.3-beta.1"
type = "provider"
description = "d"
author = "a"
homepage = "https://example.com"
license = "MIT"
min_tark_version = "0.5.0"
api_version = "0.1"
wasm = "dist/p.wasm"

[oauth]
flow = "pkce"
auth_url = "https://auth.example.com/authorize"
token_url = "https://auth.example.com/oauth/token"
client_id = "${MY_CLIENT_ID}"
client_secret = "${MY_CLIENT_SECRET}"
scopes = ["openid", "offline_access"]
redirect_uri = "http://localhost:8888/callback"
credentials_path = "~/.config/tark/my_oauth.json"
process_tokens_callback = "auth_process_tokens"
use_state = false

[oauth.extra_params]
prompt = "consent"

[capabilities]
storage = true
http = ["api.example.com", "*.googleapis.com", "http://localhost:11434"]
env = ["MY_API_KEY", "GEMINI_*"]
fs_read = ["~/.config/tark/my_oauth.json", "./data"]
shell = false

[contributes]
providers = [{ id = "my", name = "Mine", description = "x", base_provider = "openai" }]
channels = [{ id = "c", name = "C" }]
commands = [{ id = "my.login", title = "Log in", category = "Auth" }]
configuration = [{ key = "my.region", type = "string", default = "eu", description = "d" }]

[activation]
events = ["onStartup", "onProvider:my", "onChannel:c", "onCommand:my.login"]

[config]
region = "eu"
retries = 3
"#;
    let m = parse(text, "my-plugin", &host());
    let m = m.map_err(|e| e.to_string());
    let Ok(m) = m else {
        panic!("{m:?}");
    };
    assert_eq!(m.warnings, Vec::<String>::new());
    assert_eq!(
        (m.plugin_type, m.wasm.as_str()),
        (PluginType::Provider, "dist/p.wasm")
    );
    assert!(m.capabilities.storage && m.capabilities.env.len() == 2);
    assert_eq!(m.base_provider(), "openai");
    assert_eq!(m.activation.len(), 4);
    assert!(m.config.is_some_and(|c| c.get("retries").is_some()));
    let o = m.oauth;
    assert!(o.as_ref().is_some_and(|o| o.flow == oauth::Flow::Pkce
        && !o.use_state
        && o.client_secret.as_deref() == Some("${MY_CLIENT_SECRET}")
        && o.extra_params.get("prompt").is_some_and(|v| v == "consent")));
}

#[test]
fn unknown_keys_and_ungranted_capabilities_are_warnings_not_errors() {
    let text = format!(
        "{}\ncolour = \"blue\"\n[capabilites]\nstorage = true\n[capabilities]\nstoarge = true\nfilesystem = [\"src\"]\n\
         [contributes]\nproviders = [{{ id = \"x\", basse_provider = \"y\" }}]\n[activation]\nevents = [\"whenever\"]\n\
         [oauth]\nflow = \"device_flow\"\nauth_url = \"https://a.example/d\"\ntoken_url = \"https://a.example/t\"\nclient_id = \"c\"\nscope = \"x\"\n",
        manifest(OK, "")
            .trim_end()
            .trim_end_matches("[capabilities]")
    );
    let m = parse(&text, "my-plugin", &host()).map_err(|e| e.to_string());
    let warnings = m.map(|m| m.warnings.join("\n")).unwrap_or_else(|e| e);
    for want in [
        "unknown key plugin.colour",
        "unknown key capabilites",
        "unknown key capabilities.stoarge",
        "unknown key contributes.providers.0.basse_provider",
        "unknown key oauth.scope",
        "capabilities.filesystem [\"src\"] grants nothing",
        "activation event \"whenever\"",
    ] {
        assert!(warnings.contains(want), "{want} not in:\n{warnings}");
    }
}

#[test]
fn api_version_table() {
    for (v, ok) in [
        (None, true),
        (Some("0.1"), true),
        (Some("0.1.0"), true),
        (Some("^0.1"), true),
        (Some(">=0.1, <0.2"), true),
        (Some("0.2"), false),
        (Some("1"), false),
        (Some("banana"), false),
    ] {
        let line = v
            .map(|v| format!("\napi_version = \"{v}\""))
            .unwrap_or_default();
        let r = parse(&manifest(&format!("{OK}{line}"), ""), "my-plugin", &host());
        assert_eq!(r.is_ok(), ok, "{v:?}: {r:?}");
        if let Err(e) = r {
            assert!(e.to_string().contains("plugin.api_version"), "{e}");
        }
    }
}

#[test]
fn defaults_apply() {
    let m = parse(&manifest(OK, ""), "my-plugin", &host()).ok();
    assert!(
        m.is_some_and(|m| m.wasm == "plugin.wasm" && m.capabilities == Capabilities::default())
    );
}

#[test]
fn invalid_manifests_name_the_problem() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "name = \"My_Plugin\"\nversion = \"1.0.0\"\ntype = \"tool\"",
            "",
            "lowercase",
        ),
        (
            "version = \"1.0.0\"\ntype = \"tool\"",
            "",
            "plugin.name is required",
        ),
        (
            "name = \"my-plugin\"\nversion = \"1.0\"\ntype = \"tool\"",
            "",
            "not semver",
        ),
        (
            "name = \"my-plugin\"\ntype = \"tool\"",
            "",
            "plugin.version is required",
        ),
        (
            "name = \"my-plugin\"\nversion = \"1.0.0\"\ntype = \"widget\"",
            "",
            "not one of",
        ),
        (
            "name = \"my-plugin\"\nversion = \"1.0.0\"",
            "",
            "plugin.type is required",
        ),
        (
            "name = \"other\"\nversion = \"1.0.0\"\ntype = \"tool\"",
            "",
            "does not match its folder",
        ),
        (
            OK,
            "http = [\"https://ok.com@evil.com\"]",
            "capabilities.http",
        ),
        (OK, "http = [\"api.example.com/path\"]", "capabilities.http"),
        (OK, "http = [\"\"]", "capabilities.http"),
        (OK, "http = [\"host:0\"]", "capabilities.http"),
        (OK, "env = [\"*\"]", "capabilities.env"),
        (OK, "env = [\"A-B\"]", "capabilities.env"),
        (OK, "fs_read = [\"\"]", "capabilities.fs_read"),
        (OK, "storage = \"yes\"", "invalid type"),
        (
            "name = \"my-plugin\"\nversion = \"1.0.0\"\ntype = \"tool\"\nwasm = \"../x.wasm\"",
            "",
            "inside the plugin folder",
        ),
        (
            "name = \"my-plugin\"\nversion = \"1.0.0\"\ntype = \"tool\"\nwasm = \"/etc/x.wasm\"",
            "",
            "inside the plugin folder",
        ),
        (
            "name = \"my-plugin\"\nversion = \"1.0.0\"\ntype = \"tool\"\nmin_tark_version = \"9.0.0\"",
            "",
            "needs tark 9.0.0",
        ),
    ];
    for (plugin, caps, want) in cases {
        let err = parse(&manifest(plugin, caps), "my-plugin", &host())
            .err()
            .map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains(want)),
            "{plugin:?} {caps:?} gave {err:?}"
        );
    }
    let garbage = parse("this is [not toml", "x", &host())
        .err()
        .map(|e| e.to_string());
    assert!(garbage.is_some_and(|e| e.starts_with("plugin.toml:")));
    let missing = parse("[other]\n", "x", &host())
        .err()
        .map(|e| e.to_string());
    assert!(missing.is_some_and(|e| e.contains("no [plugin] table")));
}

#[test]
fn all_problems_are_reported_together() {
    let err = parse(
        &manifest("name = \"A\"\nversion = \"x\"", "env = [\"*\"]"),
        "a",
        &host(),
    )
    .err();
    assert_eq!(err.map(|e| e.problems.len()), Some(4));
}

#[test]
fn name_table() {
    for (name, ok) in [
        ("a", true),
        ("my-plugin2", true),
        ("-a", false),
        ("a-", false),
        ("a--b", false),
        ("A", false),
        ("a_b", false),
        ("", false),
        ("a.b", false),
        (&"a".repeat(65), false),
    ] {
        assert_eq!(valid_name(name), ok, "{name:?}");
    }
}

#[test]
fn tau_limits_are_requested_limits() {
    let text = format!(
        "{}\n[tau]\ntimeout_ms = 1500\n[tau.wasm]\nfuel_limit = 2000000\nmemory_limit_bytes = 33554432\n\
         max_response_bytes = 256000\nfilesystem_mode = \"deny\"\nnetwork_mode = \"allow\"\nenv_allowlist = [\"HOME\"]\n",
        manifest(OK, "")
    );
    let m = parse(&text, "my-plugin", &host()).map_err(|e| e.to_string());
    let Ok(m) = m else {
        panic!("{m:?}");
    };
    assert_eq!(
        m.limits,
        Requested {
            deadline_ms: Some(1500),
            fuel: Some(2_000_000),
            memory_bytes: Some(32 << 20),
            max_response_bytes: Some(256_000),
        }
    );
    let warnings = m.warnings.join("\n");
    assert!(
        warnings.contains("network_mode \"allow\" grants nothing"),
        "{warnings}"
    );
    assert!(warnings.contains("env_allowlist [\"HOME\"]"), "{warnings}");
    assert!(!warnings.contains("filesystem_mode"), "{warnings}");
    let zero = format!("{}\n[tau]\ntimeout_ms = 0\n", manifest(OK, ""));
    let err = parse(&zero, "my-plugin", &host())
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("tau.timeout_ms must be positive")));
}

#[test]
fn command_tools_load_only_as_a_tool_plugin_declaring_shell_and_no_module() {
    let tools = "[[tools]]\nname = \"git_status\"\ncommand = \"git\"\nargs = [\"-C\", \"{repo}\", \"status\"]\n";
    let with = |plugin: &str, caps: &str, tools: &str| format!("{}{tools}", manifest(plugin, caps));
    let ok = parse(
        &with(OK, "shell = true\nfs_read = [\"/srv\"]", tools),
        "my-plugin",
        &host(),
    );
    let m = ok.as_ref().map_err(|e| e.to_string());
    assert_eq!(
        m.map(|m| (m.commands.len(), m.commands[0].risk, m.warnings.clone())),
        Ok((1, tark_proto::worker::v1::RiskLevel::Risky, Vec::new()))
    );
    let hook = "name = \"my-plugin\"\nversion = \"1.0.0\"\ntype = \"hook\"";
    let table: &[(String, &str)] = &[
        (with(OK, "", tools), "declare capabilities.shell = true"),
        (
            with(hook, "shell = true", tools),
            "only a plugin of type \"tool\"",
        ),
        (
            with(&format!("{OK}\nwasm = \"x.wasm\""), "shell = true", tools),
            "not both",
        ),
        (
            with(
                OK,
                "shell = true",
                "[[tools]]\nname = \"a\"\ncommand = \"sh -c\"\n",
            ),
            "tools.0: command \"sh -c\"",
        ),
        (
            with(
                OK,
                "shell = true",
                "[[tools]]\nname = \"a\"\ncommand = \"ls\"\n[[tools]]\nname = \"a\"\ncommand = \"ls\"\n",
            ),
            "tools.1: name \"a\" is used twice",
        ),
        (
            with(
                OK,
                "shell = true",
                "[[tools]]\nname = \"a\"\ncommand = \"ls\"\nargs = [\"{x\"]\n",
            ),
            "tools.0: args:",
        ),
        (
            with(
                OK,
                "shell = true",
                "[[tools]]\nname = \"a\"\ncommand = \"ls\"\nrisk = \"low\"\n",
            ),
            "risk \"low\"",
        ),
        (
            with(
                OK,
                "shell = true\nfs_read = [\"/srv\"]",
                "[[tools]]\nname = \"a\"\ncommand = \"ls\"\ncwd = \"/etc\"\n",
            ),
            "cwd \"/etc\" must be a path inside a declared capabilities.fs_read entry",
        ),
        (
            with(
                OK,
                "shell = true",
                "[[tools]]\nname = \"a\"\ncommand = \"ls\"\nparameters = \"[1]\"\n",
            ),
            "parameters must be a JSON schema object",
        ),
    ];
    for (text, needle) in table {
        let got = parse(text, "my-plugin", &host());
        assert!(
            got.as_ref().is_err_and(|e| e.to_string().contains(needle)),
            "{text}\n→ {got:?}"
        );
    }
}
