//! The gate every agent API request passes before any service sees it: the
//! connection's peer credentials or client certificate name a principal
//! ([`super::principals`]),
//! the RPC's rule and the tenant asked for are checked ([`super::rules`]),
//! and the request goes on with `tark-tenant` set to the tenant it acts for
//! and the [`Principal`] in its extensions; a refusal is answered here
//! (`UNAUTHENTICATED`, `PERMISSION_DENIED`) and audited with the principal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo, UdsConnectInfo};
use tonic::{Code, Status};

use super::certs;
use super::principals::{self, Peer, Principal, PrincipalConfig};
use super::rules::{self, Refusal};
use crate::broker::audit::AuditLog;
use crate::reasons::{self, Reason};

/// The request metadata naming the tenant a request acts for.
pub const TENANT_HEADER: &str = "tark-tenant";

/// What the gate decides with.
pub struct Gate {
    pub principals: Vec<PrincipalConfig>,
    /// tarkd's own uid: an admin unless configured otherwise, as root is.
    pub own_uid: u32,
    /// Whether a client certificate's common name may identify it.
    pub common_name: certs::CommonName,
    pub audit: Arc<AuditLog>,
    /// Long-lived calls ([`rules::long_lived`]) open per principal, and how
    /// many each may have.
    pub long_lived: Arc<Mutex<HashMap<String, usize>>>,
    pub max_long_lived: usize,
}

/// One long-lived call's place under its principal's cap, given back when
/// the call's response (its stream) is done with.
struct Held {
    open: Arc<Mutex<HashMap<String, usize>>>,
    principal: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.principal);
            }
        }
    }
}

impl Gate {
    /// Admits a request (setting its tenant and principal) or says why not.
    /// Who the connection is: its peer credentials (Unix socket) or its
    /// verified client certificate (TCP with mutual TLS); else why it is no one.
    fn identify<B>(&self, req: &http::Request<B>) -> Result<Principal, String> {
        let ext = req.extensions();
        if let Some(c) = ext.get::<UdsConnectInfo>().and_then(|c| c.peer_cred) {
            let peer = Peer {
                uid: c.uid(),
                gid: c.gid(),
            };
            return principals::identify(&self.principals, peer, self.own_uid).ok_or_else(|| {
                format!(
                    "uid {} gid {} is no configured principal",
                    peer.uid, peer.gid
                )
            });
        }
        let leaf = ext
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|certs| certs.first().map(|c| c.to_vec()));
        match leaf {
            Some(der) => {
                let names = certs::names(&der, self.common_name);
                principals::identify_cert(&self.principals, &names).ok_or_else(|| {
                    let shown: Vec<&str> = names
                        .iter()
                        .map(|n| match n {
                            certs::Name::Dns(s) | certs::Name::Uri(s) => s.as_str(),
                        })
                        .collect();
                    format!("client certificate {shown:?} is no configured principal")
                })
            }
            None => Err("the connection carries no peer credentials or client certificate".into()),
        }
    }

    /// A place for one more long-lived call of `who`, or the refusal.
    fn hold(&self, who: &Principal, path: &str) -> Result<Held, Status> {
        let mut open = self.long_lived.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(who.name.clone()).or_default();
        if *n >= self.max_long_lived {
            let why = format!(
                "principal {} has {n} long-lived calls open (api.max_streams_per_principal); {path} refused until one ends",
                who.name
            );
            drop(open);
            self.audit.record("-", "-", "api", path, "deny", &why);
            return Err(reasons::status(
                Code::ResourceExhausted,
                why,
                Reason::CallerOverLimit,
                None,
                None,
            ));
        }
        *n += 1;
        Ok(Held {
            open: Arc::clone(&self.long_lived),
            principal: who.name.clone(),
        })
    }

    /// Admits a request: its principal and tenant set, and for a long-lived
    /// call, its place under the principal's cap.
    fn admit<B>(&self, req: &mut http::Request<B>) -> Result<Option<Held>, Status> {
        self.check(req)?;
        let path = req.uri().path();
        if !rules::long_lived(path) {
            return Ok(None);
        }
        match req.extensions().get::<Principal>() {
            Some(who) => self.hold(who, path).map(Some),
            None => Ok(None),
        }
    }

    fn check<B>(&self, req: &mut http::Request<B>) -> Result<(), Status> {
        let path = req.uri().path().to_owned();
        let who = match self.identify(req) {
            Ok(who) => who,
            Err(why) => {
                self.audit.record("-", "-", "api", &path, "deny", &why);
                return Err(reasons::status(
                    Code::Unauthenticated,
                    format!("{why} of tarkd"),
                    Reason::CallerUnknown,
                    None,
                    None,
                ));
            }
        };
        let asked = match req.headers().get(TENANT_HEADER).map(|v| v.to_str()) {
            None => None,
            Some(Ok(t)) => Some(t.to_owned()),
            Some(Err(_)) => return Err(Status::invalid_argument("tark-tenant is not ASCII")),
        };
        match rules::decide(&who, &path, asked.as_deref()) {
            Ok(tenant) => {
                let value = http::HeaderValue::from_str(&tenant)
                    .map_err(|_| Status::invalid_argument("tark-tenant is not a header value"))?;
                req.headers_mut().insert(TENANT_HEADER, value);
                req.extensions_mut().insert(who);
                Ok(())
            }
            Err(Refusal::Denied(why) | Refusal::Unknown(why)) => {
                let tenant = asked.as_deref().unwrap_or("-");
                self.audit.record(
                    tenant,
                    "-",
                    "api",
                    &path,
                    "deny",
                    &format!("{why} (principal {})", who.name),
                );
                Err(reasons::status(
                    Code::PermissionDenied,
                    why,
                    Reason::CallerNotAllowed,
                    None,
                    None,
                ))
            }
        }
    }
}

/// The gate as a tower layer over every service of the server.
#[derive(Clone)]
pub struct GateLayer(pub Arc<Gate>);

impl<S> tower::Layer<S> for GateLayer {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            gate: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone)]
pub struct Gated<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S, B> tower::Service<http::Request<B>> for Gated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        match self.gate.admit(&mut req) {
            Ok(None) => Box::pin(self.inner.call(req)),
            // Held while the call waits and then by its response's body.
            Ok(Some(held)) => {
                let call = self.inner.call(req);
                Box::pin(async move {
                    let response = call.await?;
                    Ok(response.map(|body| {
                        tonic::body::Body::new(http_body_util::BodyExt::map_frame(
                            body,
                            move |frame| {
                                let _held = &held;
                                frame
                            },
                        ))
                    }))
                })
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}
