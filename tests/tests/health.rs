//! The standard gRPC health and reflection services, through a real tarkd and
//! the standard clients: overall and per-service health, NOT_SERVING once
//! tarkd drains on SIGTERM, and reflection (v1 and v1alpha) of the agent API.

use tark_tests::{Options, PluginFiles, Tarkd};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::{v1, v1alpha};

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_and_turns_not_serving_on_drain() -> anyhow::Result<()> {
    let mut t = Tarkd::start(
        vec![PluginFiles::notes()?],
        Options::config("[limits]\ndeadline_ms = 1000\nkill_grace_ms = 500\n"),
    )?;
    let mut health = HealthClient::new(t.channel().await?);
    for service in ["", "tark.plugin.v1.Tools", "tark.plugin.v1.Providers"] {
        let s = health.check(check(service)).await?.into_inner();
        assert_eq!(s.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = health.check(check("tark.plugin.v1.Nope")).await.err();
    assert_eq!(unknown.map(|s| s.code()), Some(tonic::Code::NotFound));

    // A watcher sees the drain.
    let mut watch = health.watch(check("")).await?.into_inner();
    let first = watch.message().await?.map(|m| m.status());
    assert_eq!(first, Some(ServingStatus::Serving));
    // SAFETY: kill(2) on the tarkd this test started.
    unsafe { libc::kill(t.pid() as libc::pid_t, libc::SIGTERM) };
    let next = watch.message().await;
    assert!(
        matches!(&next, Ok(Some(m)) if m.status() == ServingStatus::NotServing),
        "{next:?}"
    );
    // The open watch does not hold tarkd up past the drain.
    let started = std::time::Instant::now();
    let status = t.stop(libc::SIGTERM)?;
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_and_describes_the_agent_api() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::default())?;
    let ask = |m| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(t.channel().await?);
    let requests = tokio_stream::iter(vec![
        ask(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
        ask(
            v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                "tark.plugin.v1.Tools".into(),
            ),
        ),
    ]);
    let mut answers = client.server_reflection_info(requests).await?.into_inner();
    let mut services = Vec::new();
    let mut described = false;
    while let Some(a) = answers.message().await? {
        match a.message_response {
            Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
                services = l.service.into_iter().map(|s| s.name).collect();
            }
            Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(f)) => {
                described = !f.file_descriptor_proto.is_empty();
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    for want in [
        "tark.plugin.v1.Tools",
        "tark.plugin.v1.Plugins",
        "tark.plugin.v1.System",
        "grpc.health.v1.Health",
    ] {
        assert!(services.iter().any(|s| s == want), "{want} in {services:?}");
    }
    assert!(
        !services.iter().any(|s| s.starts_with("tark.worker")),
        "the worker channel is not the agent's: {services:?}"
    );
    assert!(described, "tark.plugin.v1.Tools has a descriptor");

    // The older v1alpha, which many tools still speak.
    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(t.channel().await?);
    let list = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = alpha
        .server_reflection_info(tokio_stream::iter(vec![list]))
        .await?
        .into_inner();
    let first = answers.message().await?;
    assert!(
        matches!(
            first.and_then(|a| a.message_response),
            Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(l))
                if l.service.iter().any(|s| s.name == "tark.plugin.v1.Tools")
        ),
        "v1alpha lists the agent API"
    );
    Ok(())
}
