//! The TCP listener with mutual TLS, through a real tarkd and real TLS
//! clients: a client certificate signed by `api.client_ca` names a principal
//! (by DNS SAN or CN), which acts only for its tenants; a certificate from
//! another CA, an expired one and none at all are refused in the handshake,
//! and a valid one that names no principal is refused and audited.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tark_proto::plugin::v1 as pb;
use tark_tests::{Options, PluginFiles, Tarkd, for_tenant};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A certificate authority that signs leaf certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> anyhow::Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key)?.pem();
        Ok(Self {
            pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// A leaf for `name` (as DNS SAN and CN): (certificate PEM, key PEM).
    fn leaf(&self, name: &str, expired: bool) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        Ok((
            params.signed_by(&key, &self.issuer)?.pem(),
            key.serialize_pem(),
        ))
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `ListTools` over TLS with `identity` (or none), as `tenant` if given.
async fn list_tools(
    port: u16,
    ca: &str,
    identity: Option<&(String, String)>,
    tenant: Option<&str>,
) -> Result<pb::ListToolsResponse, tonic::Status> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .map_err(|e| tonic::Status::internal(e.to_string()))?
        .tls_config(tls)
        .map_err(|e| tonic::Status::internal(e.to_string()))?
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("connect: {e:?}")))?;
    let mut tools = pb::tools_client::ToolsClient::new(channel);
    let req = match tenant {
        Some(t) => for_tenant(pb::ListToolsRequest::default(), t),
        None => tonic::Request::new(pb::ListToolsRequest::default()),
    };
    tools.list_tools(req).await.map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_names_the_principal_and_refuses_the_rest() -> anyhow::Result<()> {
    let (ca, other_ca) = (Ca::new("tarkd clients")?, Ca::new("someone else")?);
    let server = ca.leaf("localhost", false)?;
    let dir = tempfile::tempdir()?;
    let write = |name: &str, text: &str| -> anyhow::Result<std::path::PathBuf> {
        let p = dir.path().join(name);
        std::fs::write(&p, text)?;
        Ok(p)
    };
    let (cert, key, client_ca) = (
        write("server.pem", &server.0)?,
        write("server.key", &server.1)?,
        write("ca.pem", &ca.pem)?,
    );
    let port = free_port()?;
    let config = format!(
        r#"
[api]
tcp = "127.0.0.1:{port}"
tls_cert = {cert:?}
tls_key = {key:?}
client_ca = {client_ca:?}

[[principals]]
name = "remote-agent"
cert = "agent-a.example"
tenants = ["team-a"]
role = "agent"
"#
    );
    let t = Tarkd::start(vec![PluginFiles::notes()?], Options::config(&config))?;

    // The principal its certificate names, for its own tenant only.
    let good = ca.leaf("agent-a.example", false)?;
    let listed = list_tools(port, &ca.pem, Some(&good), None).await?;
    assert!(
        listed.tools.iter().any(|t| t.name == "notes_save"),
        "{listed:?}"
    );
    let other = list_tools(port, &ca.pem, Some(&good), Some("team-b"))
        .await
        .err();
    assert!(
        other
            .as_ref()
            .is_some_and(|s| s.code() == Code::PermissionDenied
                && s.message()
                    .contains("principal remote-agent may not act for tenant team-b")),
        "{other:?}"
    );

    // A valid certificate naming no principal: refused, and audited.
    let stranger = ca.leaf("stranger.example", false)?;
    let refused = list_tools(port, &ca.pem, Some(&stranger), None).await.err();
    assert!(
        refused.as_ref().is_some_and(
            |s| s.code() == Code::Unauthenticated && s.message().contains("stranger.example")
        ),
        "{refused:?}"
    );

    // Refused in the handshake: another CA, an expired certificate, none.
    for (what, identity) in [
        ("another CA", Some(other_ca.leaf("agent-a.example", false)?)),
        ("expired", Some(ca.leaf("agent-a.example", true)?)),
        ("no certificate", None),
    ] {
        let r = list_tools(port, &ca.pem, identity.as_ref(), None).await;
        assert!(r.is_err(), "{what}: {r:?}");
        assert_ne!(
            r.as_ref().err().map(tonic::Status::code),
            Some(Code::PermissionDenied),
            "{what}: refused before any principal"
        );
    }

    // The Unix socket serves alongside; root's audit shows the stranger.
    let audit = t.tarkctl(&["audit"])?;
    let audit = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.contains("client certificate [\"stranger.example\"")
            && audit.contains("(principal remote-agent)"),
        "{audit}"
    );
    Ok(())
}
