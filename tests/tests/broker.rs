//! The capability broker through real processes: the probe example plugin makes
//! host calls inside a sandboxed worker, tarkd checks them, and real servers on
//! loopback (HTTP, WebSocket) see only what was allowed.

use std::time::Duration;

use serde_json::{Value, json};
use tark_tests::servers::{HttpServer, WsServer};
use tark_tests::{Options, PluginFiles, Tarkd, eventually, probe};

fn err(v: &Value) -> String {
    v["error"].as_str().unwrap_or_default().to_owned()
}

fn assert_denied(v: &Value, want: &str) {
    assert_eq!(v["ok"], false, "{v}");
    assert!(err(v).contains(want), "want {want:?} in {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_allowlist_addresses_redirects_caps_and_headers() -> anyhow::Result<()> {
    let server = HttpServer::start()?;
    let port = server.port;
    let caps = format!("http = [\"http://localhost:{port}\", \"api.example.com\"]");
    let t = Tarkd::start(
        vec![PluginFiles::probe(&caps)?],
        Options {
            config: "[http]\nmax_request_kib = 64\nmax_redirects = 3\n".into(),
            ..Default::default()
        },
    )?;
    let base = format!("http://localhost:{port}");
    let get = |url: String| json!({ "op": "http", "url": url });

    let ok = probe(&t, get(format!("{base}/hello"))).await?;
    assert_eq!(
        (ok["status"].as_u64(), ok["body"].as_str()),
        (Some(200), Some("hello")),
        "{ok}"
    );
    let hits = server.hits();

    // Every spelling of loopback is an IP literal no entry names; user info is
    // refused; the entry's scheme and port are the only ones allowed.
    let refused = [
        (format!("http://127.0.0.1:{port}/hello"), "IP address"),
        (format!("http://2130706433:{port}/hello"), "IP address"),
        (format!("http://0x7f.1:{port}/hello"), "IP address"),
        (format!("http://0177.0.0.1:{port}/hello"), "IP address"),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/hello"),
            "IP address",
        ),
        (format!("http://[::1]:{port}/hello"), "IP address"),
        (
            format!("http://localhost:{port}@evil.example/"),
            "user info",
        ),
        (
            format!("https://localhost:{port}/hello"),
            "do not allow this scheme and port",
        ),
        (
            format!("http://localhost:{}/hello", port + 1),
            "do not allow this scheme and port",
        ),
        (
            "http://api.example.com/".into(),
            "plain http needs an entry naming http://",
        ),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "IP address",
        ),
        (
            "https://evil.example/".into(),
            "not in the plugin's http allowlist",
        ),
        ("file:///etc/passwd".into(), "only http and https"),
    ];
    for (url, want) in &refused {
        assert_denied(&probe(&t, get(url.clone())).await?, want);
    }
    assert_eq!(server.hits(), hits, "a refused request reached the server");

    // Redirects: followed when every hop passes, refused at the first that does not.
    let hop = |to: &str| get(format!("{base}/redirect?to={to}"));
    let followed = probe(&t, hop(&format!("{base}/hello"))).await?;
    assert_eq!(followed["body"], "hello", "{followed}");
    let hits = server.hits();
    assert_denied(
        &probe(&t, hop(&format!("http://127.0.0.1:{port}/hello"))).await?,
        "IP address",
    );
    assert_denied(
        &probe(&t, hop("http://169.254.169.254/")).await?,
        "IP address",
    );
    assert_denied(&probe(&t, hop("https://evil.example/")).await?, "allowlist");
    assert_eq!(
        server.hits(),
        hits + 3,
        "only the first hop of each reached the server"
    );
    assert_denied(
        &probe(&t, get(format!("{base}/loop"))).await?,
        "too many redirects",
    );
    let post =
        json!({ "op": "http", "method": "POST", "url": format!("{base}/see-other"), "body": "b" });
    assert_eq!(
        probe(&t, post).await?["body"],
        "GET ",
        "303 turns a POST into a GET"
    );

    // Size caps, both ways.
    assert_denied(
        &probe(&t, get(format!("{base}/big"))).await?,
        "over the 1024 KiB limit",
    );
    let big = json!({ "op": "http", "method": "POST", "url": format!("{base}/echo"), "body": "y".repeat(70 << 10) });
    assert_denied(&probe(&t, big).await?, "over the 64 KiB limit");
    let small =
        json!({ "op": "http", "method": "POST", "url": format!("{base}/echo"), "body": "hi" });
    assert_eq!(probe(&t, small).await?["body"], "POST hi");

    // Headers: the plugin's own pass; connection headers cannot be set.
    let h = |name: &str| json!({ "op": "http", "url": format!("{base}/headers"), "headers": [[name, "v"]] });
    let echoed = probe(&t, h("X-Probe")).await?;
    let seen: Value = serde_json::from_str(echoed["body"].as_str().unwrap_or("{}"))?;
    assert_eq!(seen["x-probe"], "v", "{seen}");
    assert_eq!(seen["host"], format!("localhost:{port}"), "{seen}");
    for name in [
        "Host",
        "Connection",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Authorization",
    ] {
        assert_denied(&probe(&t, h(name)).await?, "cannot be set by a plugin");
    }

    // Denials are audited with the plugin, capability and target.
    let audit = t.tarkctl(&["--json", "audit", "--plugin", "probe", "--limit", "100"])?;
    let audit: Value = serde_json::from_slice(&audit.stdout)?;
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        entries.iter().any(|e| e["capability"] == "http"
            && e["target"]
                .as_str()
                .is_some_and(|t| t.contains("2130706433"))
            && e["decision"] == "deny"),
        "{audit}"
    );
    Ok(())
}

/// A cloud metadata service holds the host's own credentials: a plugin's entry
/// naming it exactly is not enough, only tarkd's own policy opens it (checked
/// before any connection: the address has no route here either way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_metadata_needs_tarkds_own_policy() -> anyhow::Result<()> {
    let caps = r#"http = ["http://169.254.169.254", "http://[fd00:ec2::254]"]"#;
    let t = Tarkd::start(vec![PluginFiles::probe(caps)?], Options::default())?;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/",
    ] {
        let v = probe(&t, json!({ "op": "http", "url": url })).await?;
        assert_denied(&v, "(cloud metadata); only tarkd's own [policy] http");
    }
    let audit = t.tarkctl(&["audit"])?;
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(audit.contains("cloud metadata"), "{audit}");

    // Named by the policy too: no longer refused by tarkd (the connection
    // itself fails: nothing answers there).
    let t = Tarkd::start(
        vec![PluginFiles::probe(caps)?],
        Options::config(
            "[policy]\nhttp = [\"http://169.254.169.254\"]\n[http]\ntimeout_ms = 500\n",
        ),
    )?;
    let v = probe(
        &t,
        json!({ "op": "http", "url": "http://169.254.169.254/" }),
    )
    .await?;
    assert!(!err(&v).contains("denied"), "{v}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_time_is_bounded_by_the_call_deadline() -> anyhow::Result<()> {
    let server = HttpServer::start()?;
    let caps = format!("http = [\"http://localhost:{}\"]", server.port);
    let t = Tarkd::start(
        vec![PluginFiles::probe(&caps)?],
        Options {
            config: "[limits]\ndeadline_ms = 1500\n".into(),
            ..Default::default()
        },
    )?;
    let url = format!("http://localhost:{}/slow", server.port);
    let started = std::time::Instant::now();
    let v = probe(&t, json!({ "op": "http", "url": url })).await?;
    // The plugin got an error value in time to report it: the call succeeded.
    assert_denied(&v, "timed out");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_fs_storage_and_log_through_the_broker() -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let outside = tempfile::tempdir()?;
    let allowed = outside.path().join("allowed");
    std::fs::create_dir_all(&allowed)?;
    std::fs::write(allowed.join("ok.txt"), "readable")?;
    std::fs::write(outside.path().join("secret.txt"), "secret")?;
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), allowed.join("escape"))?;
    let home = outside.path().join("home");
    std::fs::create_dir_all(home.join(".config"))?;
    std::fs::write(home.join(".config/app.json"), "{}")?;
    let caps = format!(
        "storage = true\nenv = [\"PROBE_*\"]\nfs_read = [\"./data\", {:?}, \"~/.config\"]",
        allowed.display().to_string()
    );
    let t = Tarkd::start(
        vec![PluginFiles::probe(&caps)?],
        Options {
            config: format!(
                "[storage]\nmax_keys = 3\n[fs]\nhome = {:?}\n",
                home.display().to_string()
            ),
            env: vec![
                ("PROBE_TOKEN".into(), "from-env".into()),
                ("OTHER_SECRET".into(), "hidden".into()),
            ],
            ..Default::default()
        },
    )?;
    let secrets = t.dir.path().join("state/secrets");
    std::fs::create_dir_all(&secrets)?;
    let secrets_file = secrets.join("probe.env");
    std::fs::write(
        &secrets_file,
        "PROBE_KEY=from-secrets\nPROBE_TOKEN=overridden\n",
    )?;
    std::fs::set_permissions(&secrets_file, std::fs::Permissions::from_mode(0o600))?;

    let env = |name: &str| json!({ "op": "env", "name": name });
    assert_eq!(probe(&t, env("PROBE_KEY")).await?["value"], "from-secrets");
    assert_eq!(probe(&t, env("PROBE_TOKEN")).await?["value"], "overridden");
    assert_eq!(probe(&t, env("OTHER_SECRET")).await?["value"], Value::Null);
    assert_eq!(probe(&t, env("PROBE_*")).await?["value"], Value::Null);
    // A secrets file others can read is ignored, and tarkd says why.
    std::fs::set_permissions(&secrets_file, std::fs::Permissions::from_mode(0o644))?;
    assert_eq!(probe(&t, env("PROBE_KEY")).await?["value"], Value::Null);
    assert_eq!(probe(&t, env("PROBE_TOKEN")).await?["value"], "from-env");
    t.wait_for_log("chmod 600", Duration::from_secs(5))?;

    let fs = |path: &str| json!({ "op": "fs", "path": path });
    let read = probe(&t, fs("./data/readme.txt")).await?;
    assert!(
        read["content"]
            .as_str()
            .is_some_and(|c| c.contains("probe data file")),
        "{read}"
    );
    let abs = allowed.join("ok.txt").display().to_string();
    assert_eq!(probe(&t, fs(&abs)).await?["content"], "readable");
    assert_eq!(probe(&t, fs("~/.config/app.json")).await?["content"], "{}");
    let escape = allowed.join("escape").display().to_string();
    assert_denied(&probe(&t, fs(&escape)).await?, "through a symlink");
    let dotdot = format!("{}/../secret.txt", allowed.display());
    assert_denied(&probe(&t, fs(&dotdot)).await?, "not declared");
    assert_denied(&probe(&t, fs("/etc/passwd")).await?, "not declared");
    assert_denied(&probe(&t, fs("./plugin.toml")).await?, "not declared");
    assert_denied(&probe(&t, fs("relative.txt")).await?, "not an absolute");

    let set = |k: &str| json!({ "op": "storage_set", "key": k, "value": "v" });
    for k in ["a", "b", "c"] {
        assert_eq!(probe(&t, set(k)).await?["ok"], true);
    }
    assert_denied(&probe(&t, set("d")).await?, "quota");
    assert_denied(&probe(&t, set("bad\u{1}key")).await?, "control");
    let keys = probe(&t, json!({ "op": "storage_list" })).await?;
    assert_eq!(keys["keys"], json!(["a", "b", "c"]));

    probe(&t, json!({ "op": "log", "message": "probe says hello" })).await?;
    let line = t.wait_for_log("probe says hello", Duration::from_secs(5))?;
    assert!(
        line.contains("plugin=probe") && line.contains("tenant=default"),
        "{line}"
    );

    let audit = t.tarkctl(&["--json", "audit", "--plugin", "probe"])?;
    let audit: Value = serde_json::from_slice(&audit.stdout)?;
    let counts = audit["counts"].as_array().cloned().unwrap_or_default();
    for cap in ["env", "fs"] {
        assert!(
            counts.iter().any(|c| c["capability"] == cap),
            "{cap} not counted: {audit}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_are_checked_bounded_and_closed_with_the_worker() -> anyhow::Result<()> {
    let server = WsServer::start()?;
    let caps = format!("http = [\"http://localhost:{}\"]", server.port);
    let t = Tarkd::start(
        vec![PluginFiles::probe(&caps)?],
        Options {
            config: "[ws]\nmax_handles = 2\n".into(),
            ..Default::default()
        },
    )?;
    let url = format!("ws://localhost:{}/", server.port);
    let echo = probe(&t, json!({ "op": "ws", "url": url, "send": "ping" })).await?;
    assert_eq!(echo["received"]["data"], "ping", "{echo}");
    assert_eq!(echo["closed"]["ok"], true, "{echo}");

    let ws = |url: String| json!({ "op": "ws", "url": url });
    assert_denied(
        &probe(&t, ws(format!("wss://localhost:{}/", server.port))).await?,
        "do not allow",
    );
    assert_denied(
        &probe(&t, ws(format!("ws://127.0.0.1:{}/", server.port))).await?,
        "IP address",
    );
    assert_denied(
        &probe(&t, ws("ws://evil.example/".into())).await?,
        "allowlist",
    );
    assert_denied(
        &probe(&t, ws(format!("http://localhost:{}/", server.port))).await?,
        "only ws and wss",
    );
    let with_host = json!({ "op": "ws", "url": url, "headers": "{\"Host\":\"evil\"}" });
    assert_denied(&probe(&t, with_host).await?, "cannot be set by a plugin");

    // Connections left open count against the limit, and end with the worker.
    let keep = json!({ "op": "ws", "url": url, "keep_open": true });
    for _ in 0..2 {
        assert_eq!(probe(&t, keep.clone()).await?["ok"], true);
    }
    assert_denied(&probe(&t, keep.clone()).await?, "limit per worker");
    assert!(
        eventually(Duration::from_secs(5), || server.open() == 2).await,
        "{}",
        server.open()
    );
    t.kill_worker("probe", "default").await?;
    assert!(
        eventually(Duration::from_secs(10), || server.open() == 0).await,
        "{} connections outlived the worker",
        server.open()
    );
    Ok(())
}
