//! tark's core-module ABI through real tarkd and worker processes: the example
//! provider written the way tark's published plugins are (no wit-bindgen, a
//! plain wasm32 module), its host imports brokered like a component's, and
//! guests that break the ABI's memory rules failing their call, never the worker.

use tark_proto::plugin::v1 as pb;
use tark_tests::{Options, PluginFiles, Tarkd};
use tonic::Code;

fn chat(plugin: &str, text: &str) -> pb::ChatRequest {
    pb::ChatRequest {
        plugin: plugin.into(),
        model: "echo".into(),
        messages: vec![pb::ChatMessage {
            role: "user".into(),
            content: text.into(),
        }],
    }
}

fn legacy() -> anyhow::Result<Tarkd> {
    Tarkd::start(
        vec![PluginFiles::legacy_provider()?, PluginFiles::echo()?],
        Options {
            env: vec![("LEGACY_GREETING".into(), "hello".into())],
            ..Options::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_module_provider_serves_the_agent_api() -> anyhow::Result<()> {
    let t = legacy()?;
    let mut p = t.providers().await?;

    let list = t.list_providers().await?;
    assert_eq!(list.errors, Vec::<String>::new());
    let legacy = list
        .providers
        .iter()
        .find(|p| p.plugin == "legacy-provider");
    let legacy = legacy.cloned().unwrap_or_default();
    assert_eq!(legacy.id, "legacy-echo");
    assert!(legacy.serves_chat, "it exports provider_chat");
    assert_eq!(legacy.base_provider, "openai", "from [contributes]");
    let echo = list.providers.iter().find(|p| p.plugin == "echo");
    assert!(echo.is_some_and(|e| e.serves_chat), "components serve chat");

    let models = p
        .list_models(pb::PluginRef {
            id: "legacy-provider".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        models
            .models
            .iter()
            .map(|m| (m.id.as_str(), m.context_window))
            .collect::<Vec<_>>(),
        [("echo", 4096)]
    );

    let reply = p
        .chat(chat("legacy-provider", "hi there"))
        .await?
        .into_inner();
    assert_eq!(reply.text, "echo: hi there");
    assert_eq!(reply.finish_reason, "echo", "the model reached the guest");
    assert!(reply.usage.is_some_and(|u| u.output_tokens == 14));

    // Host imports, brokered: storage persists across calls, env reads a granted
    // variable and an undeclared one reads empty, the log reaches tarkd's log.
    for want in ["count 1 (set returned 0)", "count 2 (set returned 0)"] {
        let r = p.chat(chat("legacy-provider", "count")).await?.into_inner();
        assert_eq!(r.text, want);
    }
    let r = p
        .chat(chat("legacy-provider", "env LEGACY_GREETING"))
        .await?;
    assert_eq!(r.into_inner().text, "env LEGACY_GREETING=hello");
    let r = p.chat(chat("legacy-provider", "env HOME")).await?;
    assert_eq!(r.into_inner().text, "env HOME=");
    let r = p.chat(chat("legacy-provider", "log")).await?;
    assert_eq!(r.into_inner().text, "logged");
    t.wait_for_log(
        "hello from a core module",
        std::time::Duration::from_secs(10),
    )?;

    // http with no grant: tark's "denied" code, and an audit entry.
    let r = p
        .chat(chat("legacy-provider", "fetch https://example.com/"))
        .await?;
    assert_eq!(r.into_inner().text, "http code -2");

    // A stream is the whole answer as one chunk.
    let mut stream = p
        .chat_stream(chat("legacy-provider", "streamed"))
        .await?
        .into_inner();
    let mut chunks = Vec::new();
    while let Some(c) = stream.message().await? {
        chunks.push(c);
    }
    assert_eq!(chunks.len(), 1);
    assert!(chunks[0].done && chunks[0].text == "echo: streamed");

    // Credentials for the agent's own provider, audited.
    let c = p
        .get_credentials(pb::PluginRef {
            id: "legacy-provider".into(),
        })
        .await?
        .into_inner();
    assert_eq!(c.base_provider, "openai");
    let creds: serde_json::Value = serde_json::from_str(&c.credentials_json)?;
    assert_eq!(creds["access_token"], "example-token");
    let audit = t.tarkctl(&["audit", "--plugin", "legacy-provider"])?;
    let audit = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(audit.contains("credentials"), "{audit}");

    // A component provider has no credentials to give.
    let none = p
        .get_credentials(pb::PluginRef { id: "echo".into() })
        .await
        .err()
        .map(|s| s.message().to_owned());
    assert!(none.is_some_and(|m| m.contains("echo")));

    // What plugin info shows about the module.
    let info = t.plugin_info("legacy-provider").await?;
    assert_eq!(info.wit, "tark core module (provider)");
    for export in ["provider_chat", "provider_auth_credentials", "dealloc"] {
        assert!(
            info.provides.iter().any(|p| p == export),
            "{:?}",
            info.provides
        );
    }
    let status = t.tarkctl(&["plugin", "info", "legacy-provider"])?;
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains("provides:") && status.contains("provider_chat"),
        "{status}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_breaking_the_memory_rules_fails_its_call_only() -> anyhow::Result<()> {
    let t = legacy()?;
    let mut p = t.providers().await?;
    p.chat(chat("legacy-provider", "warm up")).await?;
    let pid = t.worker_pid("legacy-provider", "default").await?;
    assert!(pid.is_some());

    // A key pointer outside memory: the import answers tark's "bad input".
    let r = p.chat(chat("legacy-provider", "bad-pointer")).await?;
    assert_eq!(r.into_inner().text, "bad pointer code -1");

    // A result length past the buffer the host gave: refused, named.
    let err = p.chat(chat("legacy-provider", "overlong")).await.err();
    let err = err.map(|s| (s.code(), s.message().to_owned()));
    assert!(
        err.as_ref()
            .is_some_and(|(_, m)| m.contains("legacy-provider")
                && m.contains("provider_chat")
                && m.contains("reported 1048576 bytes written into a 65536-byte buffer")),
        "{err:?}"
    );

    // An error code, and a trap.
    let err = p.chat(chat("legacy-provider", "fail")).await.err();
    assert!(
        err.as_ref()
            .is_some_and(|s| s.message().contains("provider_chat returned error code -7")),
        "{err:?}"
    );
    let err = p.chat(chat("legacy-provider", "trap")).await.err();
    assert!(err.is_some_and(|s| s.code() != Code::Ok));

    // The worker lived through all of it, and the plugin still answers.
    let r = p.chat(chat("legacy-provider", "still here")).await?;
    assert_eq!(r.into_inner().text, "echo: still here");
    assert_eq!(t.worker_pid("legacy-provider", "default").await?, pid);
    Ok(())
}

/// A core-module provider whose `alloc` is `alloc_body` and whose
/// `provider_info` copies `info` (JSON) into the buffer it is given; `extra` is
/// more module text (imports first, then functions).
fn provider_wat(
    name: &str,
    alloc_body: &str,
    info: &str,
    imports: &str,
    extra: &str,
) -> PluginFiles {
    let escaped = info.replace('\\', "\\\\").replace('"', "\\\"");
    let wat = format!(
        r#"(module
            {imports}
            (memory (export "memory") 1)
            (data (i32.const 1024) "{escaped}")
            (func (export "alloc") (param i32) (result i32) {alloc_body})
            (func (export "provider_info") (param $r i32) (result i32)
                (call $before)
                (memory.copy (local.get $r) (i32.const 1024) (i32.const {len}))
                (i32.const {len}))
            (func (export "provider_models") (param i32) (result i32) (i32.const 0))
            (func (export "provider_auth_status") (result i32) (i32.const 0))
            {extra})"#,
        len = info.len(),
    );
    let wasm = wat::parse_str(&wat).unwrap_or_else(|e| panic!("{name}: {e}"));
    PluginFiles::new(
        name,
        &tark_tests::fixtures::manifest(name, "provider", ""),
        Some(wasm),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_allocators_and_shapes_are_named_errors() -> anyhow::Result<()> {
    let info = r#"{"id":"x","display_name":"x"}"#;
    let nothing = "(func $before)";
    let plugins = vec![
        provider_wat("null-alloc", "(i32.const 0)", info, "", nothing),
        provider_wat("edge-alloc", "(i32.const 65530)", info, "", nothing),
        provider_wat(
            "greedy-alloc",
            "(drop (memory.grow (i32.const 2000))) (i32.const 64)",
            info,
            "",
            nothing,
        ),
        provider_wat("fine", "(i32.const 4096)", info, "", nothing),
        PluginFiles::new(
            "no-memory",
            &tark_tests::fixtures::manifest("no-memory", "provider", ""),
            Some(wat::parse_str(
                r#"(module (func (export "alloc") (param i32) (result i32) (i32.const 8)))"#,
            )?),
        ),
    ];
    let t = Tarkd::start(plugins, Options::default())?;
    let list = t.list_providers().await?;
    let error_of = |plugin: &str| {
        list.errors
            .iter()
            .find(|e| e.contains(&format!("plugin {plugin}")))
            .cloned()
            .unwrap_or_default()
    };
    let null = error_of("null-alloc");
    assert!(
        null.contains("provider_info: alloc(8192) returned 0x0: null pointer"),
        "{null}"
    );
    let edge = error_of("edge-alloc");
    assert!(
        edge.contains("outside the plugin's 65536-byte memory"),
        "{edge}"
    );
    let greedy = error_of("greedy-alloc");
    assert!(greedy.contains("memory limit"), "{greedy}");
    let shape = error_of("no-memory");
    assert!(
        shape.contains("exports no memory") && shape.contains("does not export provider_info"),
        "{shape}"
    );
    assert!(list.providers.iter().any(|p| p.plugin == "fine"));
    assert_eq!(list.errors.len(), 4, "{:?}", list.errors);
    Ok(())
}

/// The preview-1 table, through a real guest under the full sandbox: every
/// function that could reach the host, called by the guest, and what
/// `wasmtime-wasi` under tarkd's deny-by-default context answers (the errno).
/// Paths and sockets are recorded as denials in tarkd's audit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_preview1_is_deny_by_default() -> anyhow::Result<()> {
    const W: &str = "wasi_snapshot_preview1";
    // (import, WAT type, call with arguments)
    let probes: &[(&str, &str, &str, u32)] = &[
        (
            "path_open",
            "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)",
            "(i32.const 3) (i32.const 0) (i32.const 2048) (i32.const 11) (i32.const 0) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 3000)",
            8, // no preopened directory: EBADF, audited
        ),
        (
            "fd_prestat_get",
            "(param i32 i32) (result i32)",
            "(i32.const 3) (i32.const 3000)",
            8, // no preopens: EBADF
        ),
        (
            "fd_read",
            "(param i32 i32 i32 i32) (result i32)",
            "(i32.const 0) (i32.const 3000) (i32.const 1) (i32.const 3100)",
            0, // stdin is empty: 0 bytes
        ),
        (
            "fd_write",
            "(param i32 i32 i32 i32) (result i32)",
            "(i32.const 3) (i32.const 3000) (i32.const 0) (i32.const 3100)",
            8, // no descriptor 3: EBADF
        ),
        ("fd_close", "(param i32) (result i32)", "(i32.const 1)", 0), // the guest may close its own stdout
        (
            "fd_readdir",
            "(param i32 i32 i32 i64 i32) (result i32)",
            "(i32.const 3) (i32.const 3000) (i32.const 64) (i64.const 0) (i32.const 3100)",
            8, // EBADF
        ),
        (
            "path_unlink_file",
            "(param i32 i32 i32) (result i32)",
            "(i32.const 3) (i32.const 2048) (i32.const 11)",
            8, // EBADF, audited
        ),
        (
            "path_create_directory",
            "(param i32 i32 i32) (result i32)",
            "(i32.const 3) (i32.const 2048) (i32.const 4)",
            8, // EBADF, audited
        ),
        (
            "path_symlink",
            "(param i32 i32 i32 i32 i32) (result i32)",
            "(i32.const 2048) (i32.const 4) (i32.const 3) (i32.const 2048) (i32.const 4)",
            8, // EBADF, audited
        ),
        (
            "sock_accept",
            "(param i32 i32 i32) (result i32)",
            "(i32.const 3) (i32.const 0) (i32.const 3000)",
            8, // no sockets: EBADF, audited
        ),
        (
            "sock_recv",
            "(param i32 i32 i32 i32 i32 i32) (result i32)",
            "(i32.const 3) (i32.const 3000) (i32.const 0) (i32.const 0) (i32.const 3100) (i32.const 3104)",
            8, // EBADF, audited
        ),
        (
            "sock_send",
            "(param i32 i32 i32 i32 i32) (result i32)",
            "(i32.const 3) (i32.const 3000) (i32.const 0) (i32.const 0) (i32.const 3100)",
            8, // EBADF, audited
        ),
        (
            "poll_oneoff",
            "(param i32 i32 i32 i32) (result i32)",
            "(i32.const 3000) (i32.const 3200) (i32.const 1) (i32.const 3400)",
            0, // a clock subscription: allowed
        ),
        (
            "proc_raise",
            "(param i32) (result i32)",
            "(i32.const 9)",
            58,
        ), // ENOTSUP
        (
            "environ_sizes_get",
            "(param i32 i32) (result i32)",
            "(i32.const 3000) (i32.const 3004)",
            0, // allowed (the grant's variables)
        ),
        (
            "clock_time_get",
            "(param i32 i64 i32) (result i32)",
            "(i32.const 0) (i64.const 0) (i32.const 3008)",
            0, // realtime: allowed
        ),
        (
            "random_get",
            "(param i32 i32) (result i32)",
            "(i32.const 3016) (i32.const 16)",
            0, // allowed
        ),
    ];
    // The display name's slots start after this prefix of the JSON.
    let prefix = r#"{"id":"w","display_name":""#.len();
    let mut imports = String::new();
    let mut calls = String::new();
    let mut seen = std::collections::HashSet::new();
    for (i, (name, ty, args, _)) in probes.iter().enumerate() {
        if seen.insert(*name) {
            imports.push_str(&format!(r#"(import "{W}" "{name}" (func ${name} {ty}))"#));
        }
        // Each errno as two digits at its place in the display name.
        calls.push_str(&format!(
            "(call $put2 (i32.const {}) (call ${name} {args}))",
            1024 + prefix + i * 3
        ));
    }
    // The environment's count, as the guest saw it.
    calls.push_str(&format!(
        "(call $put2 (i32.const {}) (i32.load (i32.const 3000)))",
        1024 + prefix + probes.len() * 3
    ));
    let slots = "?? ".repeat(probes.len() + 1);
    let info = format!(r#"{{"id":"w","display_name":"{}"}}"#, slots.trim_end());
    let extra = format!(
        r#"(data (i32.const 2048) "/etc/passwd")
           (func $put2 (param $at i32) (param $v i32)
               (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.div_u (local.get $v) (i32.const 10))))
               (i32.store8 (i32.add (local.get $at) (i32.const 1)) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10)))))
           (func $before {calls})"#
    );
    let plugin = provider_wat("wasi-probe", "(i32.const 8192)", &info, &imports, &extra);
    let t = Tarkd::start(vec![plugin], Options::default())?;
    let list = t.list_providers().await?;
    assert_eq!(list.errors, Vec::<String>::new());
    let shown = list
        .providers
        .first()
        .map(|p| p.display_name.clone())
        .unwrap_or_default();
    let got: Vec<&str> = shown.split(' ').collect();
    let mut want: Vec<String> = probes.iter().map(|p| format!("{:02}", p.3)).collect();
    want.push("00".into()); // the environment has no variables: none granted
    assert_eq!(got, want, "{shown}");
    for audited in [
        "wasi_snapshot_preview1#path_open",
        "wasi_snapshot_preview1#path_symlink",
        "wasi_snapshot_preview1#sock_accept",
    ] {
        t.wait_for_log(audited, std::time::Duration::from_secs(10))?;
    }
    let info = t.plugin_info("wasi-probe").await?;
    assert_eq!(info.wit, "tark core module (provider, wasm32-wasip1)");
    Ok(())
}
