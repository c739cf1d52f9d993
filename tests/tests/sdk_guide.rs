//! tark's plugin SDK guide, followed to the letter: a crate with
//! `wit-bindgen = "0.36"`, `tark.wit` beside it, `cargo build --release
//! --target wasm32-wasip1`, the module copied to `plugin.wasm` beside a
//! `plugin.toml`, then `plugin add ./` (examples/plugins/guide-auth is the
//! guide's Minimal Auth, guide-tool a tool of the same shape; both are built
//! by scripts/build-plugins, which CI checks against their source). tarkd
//! makes each such core module into a component and hosts it.

use std::path::Path;
use std::time::Duration;

use tark_proto::plugin::v1 as pb;
use tark_tests::{Options, Tarkd, call, fixtures};

/// The plugin author's folder: what the guide's steps leave in it.
fn author_folder(example: &str, into: &Path) -> anyhow::Result<()> {
    let from = fixtures::repo_root().join("examples/plugins").join(example);
    std::fs::create_dir_all(into.join("src"))?;
    for f in [
        "Cargo.toml",
        "plugin.toml",
        "plugin.wasm",
        "tark.wit",
        "src/lib.rs",
    ] {
        std::fs::copy(from.join(f), into.join(f))?;
    }
    Ok(())
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `plugin add ./` from the author's folder, approving what it declares.
fn add_here(t: &Tarkd, dir: &Path) -> anyhow::Result<String> {
    let out = t.tarkctl_in(dir, &["plugin", "add", "./", "--yes"])?;
    anyhow::ensure!(out.status.success(), "plugin add ./ failed: {}", text(&out));
    Ok(text(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guides_minimal_auth_installs_and_answers() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let src = tempfile::tempdir()?;
    let dir = src.path().join("my-tark-plugin");
    author_folder("guide-auth", &dir)?;
    // What the guide builds is a core module, not a component.
    let wasm = std::fs::read(dir.join("plugin.wasm"))?;
    assert_eq!(
        tark_proto::wasm::core_shape(&wasm),
        Some(tark_proto::wasm::CoreShape::WitBindgen)
    );
    add_here(&t, &dir)?;

    // The agent API.
    let mut auth = t.auth().await?;
    let me = || pb::PluginRef {
        id: "my-plugin".into(),
    };
    let status = auth.get_auth_status(me()).await?.into_inner();
    assert_eq!(status.display_name, "Minimal Auth");
    assert_eq!(
        status.status,
        pb::AuthStatus::NotAuthenticated as i32,
        "{status:?}"
    );
    let flow = auth.start_device_flow(me()).await;
    assert!(
        flow.as_ref()
            .is_err_and(|s| s.message().contains("Not implemented")),
        "{flow:?}"
    );
    let token = auth.get_token(me()).await;
    assert!(
        token
            .as_ref()
            .is_err_and(|s| s.message().contains("Not authenticated")),
        "{token:?}"
    );
    auth.logout(me()).await?;

    // tarkctl, and what plugin info says of it.
    let out = t.tarkctl(&["auth", "my-plugin", "status"])?;
    assert_eq!(text(&out), "Minimal Auth (my-plugin): not authenticated\n");
    let out = t.tarkctl(&["plugin", "info", "my-plugin"])?;
    assert!(
        text(&out).contains(
            "tark:plugin/auth-plugin (core module built by wit-bindgen, adapted to a component)"
        ),
        "{}",
        text(&out)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guide_shaped_tool_installs_and_answers() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![],
        Options {
            env: vec![("MY_TOOL_GREETING".into(), "Hi".into())],
            ..Options::default()
        },
    )?;
    let src = tempfile::tempdir()?;
    let dir = src.path().join("my-tark-tool");
    author_folder("guide-tool", &dir)?;
    add_here(&t, &dir)?;

    let mut tools = t.tools().await?;
    let listed = tools
        .list_tools(pb::ListToolsRequest::default())
        .await?
        .into_inner();
    assert!(listed.tools.iter().any(|t| t.name == "greet"), "{listed:?}");
    for n in 1..=2 {
        let out = call(&mut tools, "greet", r#"{"name":"Ada"}"#).await;
        assert_eq!(out, Ok(format!("Hi, Ada! (greeting {n})")));
    }
    // Its println! (through the adapter's WASI) and its log calls, in the log.
    t.wait_for_log("greeted Ada (2)", Duration::from_secs(10))?;
    t.wait_for_log("greeting Ada", Duration::from_secs(10))?;

    let out = t.tarkctl(&["invoke", "greet", "--args", r#"{"name":"Bo"}"#])?;
    assert!(
        text(&out).contains("Hi, Bo! (greeting 3)"),
        "{}",
        text(&out)
    );
    Ok(())
}

/// A wit-bindgen module that is not what its manifest says is refused in the
/// author's terms: the world and interface it exports, not tark's pointer ABI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wit_bindgen_module_of_the_wrong_world_is_refused_in_wit_terms() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let src = tempfile::tempdir()?;
    let dir = src.path().join("my-tark-tool");
    author_folder("guide-tool", &dir)?;
    let manifest = std::fs::read_to_string(dir.join("plugin.toml"))?;
    std::fs::write(
        dir.join("plugin.toml"),
        manifest.replace("type = \"tool\"", "type = \"auth\""),
    )?;
    let out = t.tarkctl_in(&dir, &["plugin", "add", "./", "--yes"])?;
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("tool-plugin") && shown.contains("auth-plugin"),
        "{shown}"
    );
    assert!(!shown.contains("alloc"), "{shown}");

    // Bytes that claim to be wit-bindgen's but are not: the encoder's reason.
    let mut broken = wat::parse_str(
        r#"(module (memory (export "memory") 1)
             (func (export "tark:plugin/auth-plugin#status") (result i32) (i32.const 0)))"#,
    )?;
    // A component-type section that does not decode.
    broken.extend_from_slice(&[0, 17, 14]);
    broken.extend_from_slice(b"component-type");
    broken.extend_from_slice(&[1, 2]);
    std::fs::write(dir.join("plugin.wasm"), &broken)?;
    let out = t.tarkctl_in(&dir, &["plugin", "add", "./", "--yes"])?;
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown
            .contains("a core module built by wit-bindgen that tarkd cannot make into a component"),
        "{shown}"
    );
    Ok(())
}
