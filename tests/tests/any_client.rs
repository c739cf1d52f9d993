//! The agent API as clients in other languages see it: a real Python grpcio
//! client, generated from proto/ with grpc_tools in a venv this test creates,
//! calls a real tarkd over `unix:` with grpcio's default options (the socket
//! path as `:authority`); and the standard codes with their ErrorInfo.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, ensure};
use tark_tests::{Options, PluginFiles, Tarkd, bin_dir, fixtures, invoke, run_ok};
use tonic_types::StatusExt;

/// A venv with tests/python/requirements.txt, kept in the target dir and
/// remade when the requirements change.
fn venv() -> anyhow::Result<PathBuf> {
    let requirements = fixtures::repo_root().join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)?;
    let dir = bin_dir().join("python-venv");
    let marker = dir.join("requirements.installed");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
    run_ok(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
    run_ok(
        Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet", "-r"])
            .arg(&requirements),
    )?;
    std::fs::write(&marker, wanted)?;
    Ok(dir)
}

/// Python stubs of the agent API, generated from proto/ into `out`.
fn stubs(python: &Path, out: &Path) -> anyhow::Result<()> {
    let proto = fixtures::repo_root().join("proto");
    run_ok(
        Command::new(python)
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(&proto)
            .arg(format!("--python_out={}", out.display()))
            .arg(format!("--grpc_python_out={}", out.display()))
            .arg(proto.join("tark/plugin/v1/plugin.proto")),
    )?;
    Ok(())
}

#[test]
fn a_python_grpcio_client_with_default_options() -> anyhow::Result<()> {
    let venv = venv()?;
    let python = venv.join("bin/python");
    let generated = tempfile::tempdir()?;
    stubs(&python, generated.path())?;
    let t = Tarkd::start(
        vec![PluginFiles::notes()?],
        Options::config("[api]\nmax_message_bytes = 65536\n"),
    )?;
    let script = fixtures::repo_root().join("tests/python/agent_client.py");
    let out = run_ok(
        Command::new(&python)
            .arg(script)
            .arg(&t.socket)
            .env("PYTHONPATH", generated.path()),
    )?;
    println!("{out}");
    for check in [
        "list plugins",
        "invoke",
        "status",
        "unknown plugin",
        "oversized request",
        "health",
    ] {
        ensure!(
            out.contains(&format!("ok {check}")),
            "no {check:?} in {out}"
        );
    }
    Ok(())
}

/// One unary call over a bare HTTP/2 connection, with a `grpc-timeout` the
/// client itself does not enforce (tonic's channel would, and answer for
/// tarkd): the status tarkd sends, from headers or trailers.
async fn raw_call(
    socket: &Path,
    path: &str,
    message: &impl prost::Message,
    timeout: &str,
) -> anyhow::Result<tonic::Status> {
    use http_body_util::{BodyExt, Full};
    let io = hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(socket).await?);
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await?;
    tokio::spawn(conn);
    let body = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(body.len())?.to_be_bytes());
    framed.extend_from_slice(&body);
    let req = http::Request::post(format!("http://localhost{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(Full::new(bytes::Bytes::from(framed)))?;
    let response = send.send_request(req).await?;
    if let Some(status) = tonic::Status::from_header_map(response.headers()) {
        return Ok(status);
    }
    let collected = response.into_body().collect().await?;
    let trailers = collected.trailers().context("no trailers")?;
    tonic::Status::from_header_map(trailers).context("no grpc-status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_deadline_is_deadline_exceeded_with_its_reason() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![PluginFiles::probe("storage = true")?],
        Options::config("[limits]\ndeadline_ms = 60000\n"),
    )?;
    // Long enough to outlast the deadline many times over.
    let slow = invoke(
        "probe",
        r#"{"op":"storage_get","key":"k","times":10000000}"#,
    );
    let started = std::time::Instant::now();
    let status = raw_call(&t.socket, "/tark.plugin.v1.Tools/InvokeTool", &slow, "300m").await?;
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    let info = status.get_details_error_info().context("ErrorInfo")?;
    assert_eq!(
        (info.domain.as_str(), info.reason.as_str()),
        ("tarkd", "DEADLINE_EXCEEDED")
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // tarkd goes on serving; the call was cut off in the guest.
    let mut tools = t.tools().await?;
    let ok = tools
        .invoke_tool(invoke("probe", r#"{"op":"storage_get","key":"k"}"#))
        .await?;
    assert_eq!(ok.into_inner().plugin, "probe");
    Ok(())
}
