//! Certificates and TLS clients for tests of the TCP listener: a CA that
//! signs leaf certificates, and a `ListTools` call over mutual TLS.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tark_proto::plugin::v1 as pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::for_tenant;

/// A certificate authority that signs leaf certificates.
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> anyhow::Result<Self> {
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

    /// A leaf with these SANs (a value with `://` is a URI SAN, else a DNS
    /// name) and subject CN: (certificate PEM, key PEM).
    pub fn leaf_with(&self, sans: &[&str], cn: Option<&str>) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for san in sans {
            params.subject_alt_names.push(if san.contains("://") {
                rcgen::SanType::URI((*san).try_into()?)
            } else {
                rcgen::SanType::DnsName((*san).try_into()?)
            });
        }
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        Ok((
            params.signed_by(&key, &self.issuer)?.pem(),
            key.serialize_pem(),
        ))
    }

    /// A leaf for `name` (as DNS SAN and CN): (certificate PEM, key PEM).
    pub fn leaf(&self, name: &str, expired: bool) -> anyhow::Result<(String, String)> {
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

/// The `[api]` lines of a TCP listener with mutual TLS on a free port: the
/// server's certificate (from `ca`, for localhost) and the client CA written
/// into `dir`. Returns the lines and the port.
pub fn listener_config(ca: &Ca, dir: &std::path::Path) -> anyhow::Result<(String, u16)> {
    let server = ca.leaf("localhost", false)?;
    let write = |name: &str, text: &str| -> anyhow::Result<std::path::PathBuf> {
        let p = dir.join(name);
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
        "[api]\ntcp = \"127.0.0.1:{port}\"\ntls_cert = {cert:?}\ntls_key = {key:?}\nclient_ca = {client_ca:?}\n"
    );
    Ok((config, port))
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `ListTools` over TLS with `identity` (or none), as `tenant` if given.
pub async fn list_tools(
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
