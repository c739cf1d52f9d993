//! WASI 0.2 for components, through a real guest built the way plugin authors
//! build one (examples/plugins/wasi-std: Rust's std, `wasm32-wasip1` plus the
//! preview-1 adapter, as `cargo component build` makes it), under the full
//! sandbox: one row per thing std does through WASI, and what tarkd answers.
//! The preview-1 table for core modules is in core_modules.rs.

use std::time::Duration;

use serde_json::{Value, json};
use tark_tests::{Options, PluginFiles, Tarkd, call};

const WAIT: Duration = Duration::from_secs(10);

/// What an answer must satisfy.
type Check = Box<dyn Fn(&Value) -> bool>;

fn answer(out: Result<String, String>) -> Value {
    match out {
        Ok(o) => serde_json::from_str(&o).unwrap_or(Value::String(o)),
        Err(e) => Value::String(e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn std_through_wasi_gets_only_what_tarkd_allows() -> anyhow::Result<()> {
    let opts = Options {
        env: vec![
            ("WASI_STD_GREETING".into(), "granted".into()),
            ("WASI_STD_OTHER".into(), "also granted".into()),
            ("NOT_GRANTED".into(), "secret".into()),
        ],
        ..Options::default()
    };
    let t = Tarkd::start(vec![PluginFiles::example("wasi-std", "wasi-std")?], opts)?;
    let mut tools = t.tools().await?;
    let mut run = async |args: Value| answer(call(&mut tools, "std", &args.to_string()).await);

    // (what std does, what the guest sees)
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let rows: Vec<(Value, Check)> = vec![
        // wasi:cli/environment: only the grant's variables, from tarkd.
        (
            json!({"op": "env", "name": "WASI_STD_GREETING"}),
            Box::new(|v| v == &json!({"value": "granted"})),
        ),
        (
            json!({"op": "env", "name": "NOT_GRANTED"}),
            Box::new(|v| v == &json!({"value": null})),
        ),
        (
            json!({"op": "env", "name": "PATH"}),
            Box::new(|v| v == &json!({"value": null})),
        ),
        (
            json!({"op": "vars"}),
            Box::new(|v| v == &json!({"names": ["WASI_STD_GREETING", "WASI_STD_OTHER"]})),
        ),
        // No arguments.
        (
            json!({"op": "args"}),
            Box::new(|v| v == &json!({"args": []})),
        ),
        // wasi:filesystem: no preopened directory, so nothing to open.
        (
            json!({"op": "read", "path": "/etc/passwd"}),
            Box::new(|v| v["error"].is_string()),
        ),
        (
            json!({"op": "list", "path": "/"}),
            Box::new(|v| v["error"].is_string()),
        ),
        (
            json!({"op": "write", "path": "/tmp/x"}),
            Box::new(|v| v["error"].is_string()),
        ),
        // wasi:cli/stdin: empty.
        (
            json!({"op": "stdin"}),
            Box::new(|v| v == &json!({"read": 0})),
        ),
        // wasi:clocks and wasi:random: allowed.
        (
            json!({"op": "time"}),
            Box::new(move |v| {
                v["monotonic"] == json!(true)
                    && v["unix"]
                        .as_u64()
                        .is_some_and(|s| s.abs_diff(unix_now) < 3600)
            }),
        ),
        (
            json!({"op": "random"}),
            Box::new(|v| v == &json!({"differs": true})),
        ),
        // wasi:sockets: refused with the WASI error code.
        (
            json!({"op": "tcp"}),
            Box::new(|v| {
                v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("access-denied"))
            }),
        ),
        (
            json!({"op": "resolve", "name": "example.com"}),
            Box::new(|v| {
                v["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("access-denied"))
            }),
        ),
    ];
    for (args, ok) in &rows {
        let got = run(args.clone()).await;
        assert!(ok(&got), "{args} answered {got}");
    }

    // wasi:cli/stdout and stderr: the plugin's log, attributed, line by line.
    let printed = run(json!({"op": "print", "out": "to stdout", "err": "to stderr"})).await;
    assert_eq!(printed, json!({"printed": true}));
    let line = t.wait_for_log("to stdout", WAIT)?;
    assert!(line.contains("wasi-std"), "{line}");
    assert!(t.wait_for_log("to stderr", WAIT)?.contains("WARN"));

    // Sockets are recorded as denials in the audit.
    for audited in [
        "wasi:sockets/tcp-create-socket#create-tcp-socket",
        "wasi:sockets/ip-name-lookup#resolve-addresses",
    ] {
        let line = t.wait_for_log(audited, WAIT)?;
        assert!(line.contains("deny"), "{line}");
    }

    // exit ends the call, not the worker: the next call is answered.
    let pid = t.running_worker("wasi-std", "default").await?;
    let exited = run(json!({"op": "exit"})).await;
    assert!(
        // WASI 0.2 carries only success or failure: exit(3) arrives as exit(1).
        exited
            .as_str()
            .is_some_and(|e| e.contains("called exit(1), which ends the call")),
        "{exited}"
    );
    assert_eq!(run(json!({"op": "stdin"})).await, json!({"read": 0}));
    assert_eq!(t.running_worker("wasi-std", "default").await?, pid);

    // All of it under the full sandbox (no syscall was added for WASI).
    let info = t.plugin_info("wasi-std").await?;
    let layers = &info
        .workers
        .first()
        .map(|w| w.sandbox.clone())
        .unwrap_or_default();
    for layer in ["seccomp", "namespaces", "landlock", "rlimits"] {
        assert!(
            layers.iter().any(|l| l.name == layer && l.applied),
            "{layer} not applied: {layers:?}"
        );
    }
    assert_eq!(info.wit.split('@').next(), Some("tark:plugin/tool-plugin"));

    // tarkd's own environment never reaches the guest, whatever it asks.
    let log = t.log().join("\n");
    assert!(!log.contains("secret"), "{log}");
    Ok(())
}

/// A component importing a WASI interface tarkd does not provide is refused
/// at install, naming the interface.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprovided_wasi_interface_is_refused_by_name() -> anyhow::Result<()> {
    let wasm = tark_tests::fixtures::tool_importing(
        "http-wanter",
        "wasi:http/outgoing-handler@0.2.0",
        "handle",
    )?;
    let manifest = tark_tests::fixtures::manifest("http-wanter", "tool", "");
    let t = Tarkd::start(
        vec![PluginFiles::new("http-wanter", &manifest, Some(wasm))],
        Options::default(),
    )?;
    let mut tools = t.tools().await?;
    let listed = tools
        .list_tools(tark_proto::plugin::v1::ListToolsRequest::default())
        .await?
        .into_inner();
    let errors = listed.errors.join("\n");
    assert!(
        errors.contains("wasi:http/outgoing-handler@0.2.0")
            && errors.contains("which tarkd does not provide"),
        "{errors}"
    );
    Ok(())
}
