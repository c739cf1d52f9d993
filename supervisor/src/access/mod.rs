//! Who may call tarkd, and for which tenants: identity from the connection
//! (never from the request), one table of what each RPC needs, and the gate
//! that applies both to every request before a service sees it.
//!
//! - [`principals`]: peer credentials or a client certificate's names → a
//!   configured principal, its role and tenants ([`certs`] reads the names);
//! - [`rules`]: the least role of each RPC, and the tenant a request acts for;
//! - [`gate`]: the tower layer that admits, scopes or refuses each request.

pub mod certs;
pub mod gate;
pub mod principals;
pub mod rules;

pub use gate::{Gate, GateLayer, TENANT_HEADER};
pub use principals::{Principal, PrincipalConfig, Role};

/// The principal a request was admitted as. A request that did not pass the
/// gate (none do in tarkd) is treated as someone who may see no tenant.
pub fn caller<T>(req: &tonic::Request<T>) -> Principal {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or_else(|| Principal {
            name: "unknown".into(),
            role: Role::Agent,
            tenants: Vec::new(),
        })
}
