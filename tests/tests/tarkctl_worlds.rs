//! tarkctl's commands for the plugin worlds, run as an operator would, against a
//! real tarkd with the bundled examples' plugins.

use tark_tests::{Options, PluginFiles, Tarkd};

/// Runs tarkctl; its stdout, or the failure with stderr.
fn run(t: &Tarkd, args: &[&str]) -> anyhow::Result<String> {
    let out = t.tarkctl(args)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "tarkctl {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

#[test]
fn providers_chat_auth_and_channels_from_the_command_line() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![
            PluginFiles::echo()?,
            PluginFiles::echo_channel()?,
            PluginFiles::device_auth(1)?,
            PluginFiles::oauth_provider(1, 2, "pkce")?,
        ],
        Options::config("[channels]\npoll_interval_ms = 20\n"),
    )?;
    let out = run(&t, &["providers"])?;
    let row = |plugin: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{plugin} ")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row("echo").contains("Echo"), "{out}");
    // Which providers chat, and which hand their credentials to the agent's own.
    assert!(!row("echo").contains("auth-only"), "{out}");
    assert!(
        row("oauth-provider").contains("auth-only (openai)"),
        "{out}"
    );
    let out = run(&t, &["models", "echo"])?;
    assert!(out.contains("forever"), "{out}");
    let out = run(
        &t,
        &[
            "chat",
            "echo",
            "--model",
            "echo",
            "--stream",
            "streamed reply",
        ],
    )?;
    assert_eq!(out, "echo: streamed reply\n");
    let out = run(
        &t,
        &["--json", "chat", "echo", "--model", "echo", "--stream", "a"],
    )?;
    let chunks: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&out)
        .into_iter()
        .collect::<Result<_, _>>()?;
    assert_eq!(chunks.len(), 2, "{out}");
    assert_eq!(chunks[1]["done"], true);

    let out = run(&t, &["auth", "device-auth", "status"])?;
    assert_eq!(
        out,
        "Device flow (example) (device-auth): not authenticated\n"
    );

    let out = run(&t, &["channels"])?;
    assert!(out.contains("echo-channel") && out.contains("no"), "{out}");
    run(&t, &["channel", "echo-channel", "start", "--config", "{}"])?;
    let out = run(
        &t,
        &["channel", "echo-channel", "send", "--to", "c1", "hello"],
    )?;
    assert!(out.starts_with("sent ("), "{out}");
    let mut polled = String::new();
    let started = std::time::Instant::now();
    while !polled.contains("echo: hello") {
        anyhow::ensure!(started.elapsed().as_secs() < 20, "nothing polled: {polled}");
        polled.push_str(&run(&t, &["channel", "echo-channel", "poll"])?);
    }
    assert!(polled.contains("[c1] echo: echo: hello"), "{polled}");
    run(&t, &["channel", "echo-channel", "stop"])?;

    // Errors are one line naming the plugin, and a non-zero exit.
    let out = t.tarkctl(&["chat", "echo", "--model", "nope", "x"])?;
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "tarkctl: plugin echo: unknown model \"nope\" (try \"echo\") (Unknown)\n"
    );
    Ok(())
}

/// `tarkctl … | head` with the reader gone: tarkctl ends by SIGPIPE, as Unix
/// tools do, not with a panic and a backtrace on the operator's terminal.
#[test]
fn a_closed_stdout_ends_tarkctl_quietly() -> anyhow::Result<()> {
    use std::os::unix::process::ExitStatusExt;
    let t = Tarkd::start(vec![PluginFiles::echo()?], Options::default())?;
    // No reader at all: the first write fails, whenever it comes.
    let (reader, writer) = nix::unistd::pipe()?;
    drop(reader);
    let out = std::process::Command::new(tark_tests::binary("tarkctl")?)
        .arg("--socket")
        .arg(&t.socket)
        .args(["plugin", "list"])
        .stdout(std::process::Stdio::from(writer))
        .stderr(std::process::Stdio::piped())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{stderr}");
    Ok(())
}
