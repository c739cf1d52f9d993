//! tarkd's ends of a worker's two channels.

use tark_proto::channel::{MAX_MESSAGE_BYTES, client_over, one_connection};
use tark_proto::worker::v1::broker_server::BrokerServer;
use tark_proto::worker::v1::worker_client::WorkerClient;
use tokio::net::UnixStream;
use tonic::transport::Channel;

use crate::broker::Broker;
use crate::metrics::{METRICS, Metrics};

pub use tark_proto::channel::adopt;

/// A client of the worker's `Worker` service.
pub async fn worker_client(
    stream: UnixStream,
) -> Result<WorkerClient<Channel>, tonic::transport::Error> {
    Ok(WorkerClient::new(client_over(stream).await?)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Serves one worker's broker calls until `gone` resolves (the worker exited).
pub async fn serve_broker(broker: Broker, stream: UnixStream, gone: impl Future<Output = ()>) {
    // Each host call counted by method (tarkd_broker_calls_total).
    let count = tower::util::MapRequestLayer::new(|req: http::Request<tonic::body::Body>| {
        let method = req.uri().path().rsplit('/').next().unwrap_or_default();
        Metrics::capability_event(&METRICS.broker_calls, method);
        req
    });
    // A status that quotes what the plugin sent (a path, a URL) is cut to a
    // size the worker's header limits take.
    let bound = tower::util::MapResponseLayer::new(crate::reasons::bound_message);
    let served = tonic::transport::Server::builder()
        .layer(count)
        .layer(bound)
        .add_service(BrokerServer::new(broker).max_decoding_message_size(MAX_MESSAGE_BYTES))
        .serve_with_incoming_shutdown(one_connection(stream), gone)
        .await;
    if let Err(e) = served {
        tracing::debug!("broker channel ended: {e}");
    }
}
