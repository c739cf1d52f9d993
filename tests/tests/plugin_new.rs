//! `tarkctl plugin new` and the SDK: each type's folder as generated is the
//! committed `examples/plugins/sdk-<type>` (scripts/build-plugins --check
//! builds those from source in CI, with the project's guest toolchain), and
//! installed with `tarkctl plugin add ./` it answers through tarkctl.

use std::path::Path;

use tark_tests::{Options, Tarkd, fixtures};

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(t: &Tarkd, args: &[&str]) -> anyhow::Result<String> {
    let out = t.tarkctl(args)?;
    anyhow::ensure!(out.status.success(), "tarkctl {args:?}: {}", text(&out));
    Ok(text(&out))
}

/// Generates `name` again with the SDK's absolute path, beside the example's
/// `.cargo/config.toml` (the guest toolchain: Debian's rustc-web, as
/// scripts/build-plugins installs it), builds it and returns the `.wasm`.
fn build_generated(
    t: &Tarkd,
    kind: &str,
    name: &str,
    work: &Path,
) -> anyhow::Result<std::path::PathBuf> {
    anyhow::ensure!(
        Path::new("/usr/bin/rustc").is_file(),
        "the guest toolchain is missing: run scripts/build-plugins first (it installs it)"
    );
    let root = fixtures::repo_root();
    let dir = work.join("build").join(name);
    let sdk = root.join("sdk").display().to_string();
    let dir_arg = dir.display().to_string();
    ok(
        t,
        &[
            "plugin",
            "new",
            name,
            "--type",
            kind,
            "--dir",
            &dir_arg,
            "--sdk-path",
            &sdk,
        ],
    )?;
    let cargo = dir.join(".cargo");
    std::fs::create_dir_all(&cargo)?;
    // The examples' settings (build-std, the linker) and the example's own
    // (wasm32-wasip1 with the preview-1 adapter).
    let settings = std::fs::read_to_string(root.join("examples/plugins/.cargo/config.toml"))?;
    std::fs::create_dir_all(work.join("build/.cargo"))?;
    std::fs::write(work.join("build/.cargo/config.toml"), settings)?;
    std::fs::copy(
        root.join("examples/plugins")
            .join(name)
            .join(".cargo/config.toml"),
        cargo.join("config.toml"),
    )?;
    // A target dir of its own (std is built into it once, then cached):
    // the examples' crates have the same names, and scripts/build-plugins
    // compares their artifacts in the guests' target dir.
    let home = std::env::var_os("HOME").unwrap_or_default();
    let target = Path::new(&home).join(".cache/tarkd/generated-target");
    let out = std::process::Command::new("/usr/bin/cargo")
        .current_dir(&dir)
        .args(["build", "--release", "-q"])
        .env("CARGO_TARGET_DIR", &target)
        .env("RUSTC_BOOTSTRAP", "1")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "building the generated {name}: {}",
        text(&out)
    );
    Ok(target
        .join("wasm32-wasip1/release")
        .join(format!("{}.wasm", name.replace('-', "_"))))
}

const FILES: [&str; 5] = [
    "Cargo.toml",
    "src/lib.rs",
    "plugin.toml",
    "README.md",
    ".gitignore",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_generated_type_is_the_built_example_and_installs() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![],
        Options::config("[channels]\npoll_interval_ms = 20\n"),
    )?;
    let work = tempfile::tempdir()?;
    for kind in ["tool", "auth", "provider", "hook", "channel"] {
        let name = format!("sdk-{kind}");
        // Generated where the examples are, so `--sdk-path` means the same.
        let dir = work.path().join("examples/plugins").join(&name);
        ok(
            &t,
            &[
                "plugin",
                "new",
                &name,
                "--type",
                kind,
                "--dir",
                &dir.display().to_string(),
                "--sdk-path",
                "../../../sdk",
            ],
        )?;
        let example = fixtures::repo_root().join("examples/plugins").join(&name);
        for f in FILES {
            assert_eq!(
                std::fs::read_to_string(dir.join(f))?,
                std::fs::read_to_string(example.join(f))?,
                "{name}/{f}: the generator and the committed example differ (regenerate the example)"
            );
        }
        // Built as rustup's wasip2 / cargo component build it: a component
        // importing WASI 0.2, in every world.
        let wasm = std::fs::read(example.join("plugin.wasm"))?;
        assert!(
            String::from_utf8_lossy(&wasm).contains("wasi:cli/environment@"),
            "{name} imports no WASI"
        );
        // Built as generated (beside the example's own toolchain settings),
        // and the output copied as the README's `cp` does.
        let built = build_generated(&t, kind, &name, work.path())?;
        std::fs::copy(built, dir.join("plugin.wasm"))?;
        let out = t.tarkctl_in(&dir, &["plugin", "add", "./", "--yes"])?;
        assert!(out.status.success(), "{name}: {}", text(&out));
    }

    let out = ok(&t, &["invoke", "greet", "--args", r#"{"name":"Ada"}"#])?;
    assert!(out.contains("Hello, Ada! (greeting #1)"), "{out}");
    let out = ok(&t, &["auth", "sdk-auth", "status"])?;
    assert_eq!(out, "sdk-auth (sdk-auth): not authenticated\n");
    let out = ok(
        &t,
        &[
            "chat",
            "sdk-provider",
            "--model",
            "repeat",
            "--stream",
            "one two",
        ],
    )?;
    assert_eq!(out, "one two\n");
    let out = t.tarkctl(&[
        "hook",
        "before-tool",
        "--payload",
        r#"{"tool":"shell","arguments":{"cmd":"rm -rf /"}}"#,
    ])?;
    assert!(
        text(&out).contains("refusing to run rm -rf"),
        "{}",
        text(&out)
    );
    ok(&t, &["channel", "sdk-channel", "start", "--config", "{}"])?;
    ok(
        &t,
        &["channel", "sdk-channel", "send", "--to", "c1", "hello"],
    )?;
    // tarkd polls the channel itself; `poll` hands over what it has gathered.
    let mut polled = String::new();
    let started = std::time::Instant::now();
    while !polled.contains("hello") {
        anyhow::ensure!(started.elapsed().as_secs() < 20, "nothing polled: {polled}");
        polled.push_str(&ok(&t, &["channel", "sdk-channel", "poll"])?);
    }
    Ok(())
}

#[test]
fn bad_names_and_used_folders_are_refused() -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let tarkctl = tark_tests::binary("tarkctl")?;
    let run = |args: &[&str]| -> anyhow::Result<std::process::Output> {
        Ok(std::process::Command::new(&tarkctl)
            .current_dir(work.path())
            .args(args)
            .output()?)
    };
    let out = run(&["plugin", "new", "My_Plugin", "--type", "tool"])?;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot be a plugin name"),
        "{}",
        text(&out)
    );
    std::fs::create_dir_all(work.path().join("taken"))?;
    std::fs::write(work.path().join("taken/x"), "")?;
    let out = run(&["plugin", "new", "taken", "--type", "tool"])?;
    assert!(
        text(&out).contains("exists and is not empty"),
        "{}",
        text(&out)
    );
    let out = run(&["plugin", "new", "fresh", "--type", "hook"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(Path::new(&work.path().join("fresh/src/lib.rs")).is_file());
    let toml = std::fs::read_to_string(work.path().join("fresh/Cargo.toml"))?;
    assert!(
        toml.contains(r#"tark-plugin-sdk = { version = "0.1", features = ["hook"] }"#),
        "{toml}"
    );
    Ok(())
}

/// The SDK ships the WIT tarkd hosts (a published crate cannot reach outside
/// its folder), byte for byte.
#[test]
fn the_sdk_ships_the_wit_tarkd_hosts() -> anyhow::Result<()> {
    let root = fixtures::repo_root();
    for f in ["tark.wit", "published/tark.wit"] {
        assert_eq!(
            std::fs::read_to_string(root.join("sdk/wit").join(f))?,
            std::fs::read_to_string(root.join("wit").join(f))?,
            "sdk/wit/{f} differs from wit/{f}: copy it"
        );
    }
    Ok(())
}
