//! tark-worker entry point. Not meant to be run by hand: tarkd starts it with the
//! channel fds in place. The single argument names the tenant/plugin, for `ps` only.

use std::sync::Arc;

use anyhow::Context;
use tark_proto::channel::{MAX_MESSAGE_BYTES, client_over, one_connection};
use tark_proto::worker::v1::broker_client::BrokerClient;
use tark_proto::worker::v1::worker_server::WorkerServer;
use tark_worker::{channel, service::WorkerService};

fn main() -> std::process::ExitCode {
    // tarkd starts the same binary as `tark-jail` to run a command tool's
    // command (see `tark_worker::jail`).
    if std::env::args_os().next().is_some_and(|a| a == "tark-jail") {
        return tark_worker::jail::main();
    }
    // Before anything else, while single-threaded: into the PID namespace tarkd
    // prepared (the parent of the fork stays behind as a reaper).
    let pid_ns = tark_worker::pidns::enter();
    if let Err(e) = &pid_ns {
        // Carrying on could leave the worker unable to start threads.
        eprintln!("tark-worker: entering the PID namespace tarkd prepared: {e}");
        return std::process::ExitCode::from(70);
    }
    let mut start_layers = tark_worker::sandbox::at_start();
    start_layers.push(tark_worker::sandbox::pid_namespace_layer(&pid_ns));
    // Diagnostics go to stderr, which tarkd captures and labels with the plugin.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .init();
    // One thread: the worker runs one call at a time, so a multi-threaded runtime
    // would only add hand-offs between threads (~55 µs each on an idle-parking VM).
    // The call deadline does not depend on this thread yielding (see `watchdog`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("tark-worker: starting the runtime: {e}");
            return std::process::ExitCode::from(70);
        }
    };
    tark_worker::engine::warm_up();
    match runtime.block_on(run(start_layers)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("tark-worker: {e:#}");
            std::process::ExitCode::from(70)
        }
    }
}

async fn run(start_layers: Vec<tark_worker::sandbox::Layer>) -> anyhow::Result<()> {
    // SAFETY: tarkd passes exactly these two fds and nothing else owns them.
    let control =
        unsafe { channel::adopt(channel::CONTROL_FD) }.context("control channel (fd 3)")?;
    // SAFETY: as above.
    let broker = unsafe { channel::adopt(channel::BROKER_FD) }.context("broker channel (fd 4)")?;
    let broker = BrokerClient::new(client_over(broker).await.context("connecting the broker")?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let service = WorkerService::new(broker, start_layers);
    let shutdown = Arc::clone(&service.shutdown);
    let server = WorkerServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = one_connection(control);
    // The worker ends when tarkd asks it to (Shutdown), kills it, or dies (the
    // death signal tarkd set at spawn).
    tonic::transport::Server::builder()
        .add_service(server)
        .serve_with_incoming_shutdown(incoming, async move { shutdown.notified().await })
        .await
        .context("serving tarkd")?;
    Ok(())
}
