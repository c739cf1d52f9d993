//! The identities a client certificate presents, for matching
//! `[[principals]] cert`. The certificate has already been verified against
//! `api.client_ca` (chain, validity period) by the TLS handshake; this only
//! reads it.
//!
//! RFC 6125: a certificate that carries subject alternative names is
//! identified by them alone (DNS names, and URIs such as SPIFFE IDs,
//! `spiffe://trust-domain/workload`; other kinds name no principal); its
//! subject's common name counts only when it has no SAN at all, and never
//! with `api.cert_common_name = "never"`. A CA that signs a SAN for one party and lets the requester pick
//! the CN would otherwise let an agent's certificate claim an admin's name.
//! DNS names compare without regard to ASCII case; URIs compare exactly.

use serde::Deserialize;
use x509_parser::extensions::GeneralName;

/// When a certificate's subject common name identifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommonName {
    /// Only when the certificate has no SAN (RFC 6125).
    #[default]
    Fallback,
    /// Never: certificates are identified by their SANs alone.
    Never,
}

/// One identity a certificate presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    /// A DNS name (SAN or common name), lowercased.
    Dns(String),
    /// A URI SAN, as written.
    Uri(String),
}

impl Name {
    /// Whether a principal's `cert` value names this identity: a value with
    /// `://` is a URI, anything else a DNS name.
    pub fn is(&self, configured: &str) -> bool {
        match self {
            Name::Uri(uri) => configured.contains("://") && uri == configured,
            Name::Dns(dns) => !configured.contains("://") && dns.eq_ignore_ascii_case(configured),
        }
    }
}

/// The certificate's identities: its DNS and URI SANs, else, when it has no
/// SAN and `cn` allows, its common names; empty if it cannot be parsed (a
/// verified one always can).
pub fn names(der: &[u8], cn: CommonName) -> Vec<Name> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut has_san = false;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            has_san = true;
            match name {
                GeneralName::DNSName(dns) => names.push(Name::Dns(dns.to_ascii_lowercase())),
                GeneralName::URI(uri) => names.push(Name::Uri((*uri).to_owned())),
                _ => {}
            }
        }
    }
    if !has_san && cn == CommonName::Fallback {
        for c in cert.subject().iter_common_name() {
            if let Ok(c) = c.as_str() {
                names.push(Name::Dns(c.to_ascii_lowercase()));
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    use super::*;

    fn der(sans: &[&str], cn: Option<&str>) -> Result<Vec<u8>, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        for s in sans {
            p.subject_alt_names.push(if s.contains("://") {
                SanType::URI((*s).try_into()?)
            } else if s.parse::<std::net::IpAddr>().is_ok() {
                SanType::IpAddress(
                    s.parse()
                        .map_err(|_| rcgen::Error::CouldNotParseCertificate)?,
                )
            } else {
                SanType::DnsName((*s).try_into()?)
            });
        }
        p.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        Ok(p.self_signed(&key)?.der().to_vec())
    }

    fn dns(n: &str) -> Name {
        Name::Dns(n.into())
    }

    #[test]
    fn sans_identify_and_the_common_name_only_without_them() -> Result<(), rcgen::Error> {
        use CommonName::{Fallback, Never};
        let spiffe = "spiffe://example.org/ns/agents/sa/agent-a";
        type Case<'a> = (&'a [&'a str], Option<&'a str>, CommonName, Vec<Name>);
        let cases: &[Case] = &[
            // A SAN and a CN: the CN is not an identity (the attack: SAN
            // agent-a, CN admin).
            (
                &["agent-a.example"],
                Some("admin.example"),
                Fallback,
                vec![dns("agent-a.example")],
            ),
            (
                &["a.example", "b.example"],
                Some("c.example"),
                Fallback,
                vec![dns("a.example"), dns("b.example")],
            ),
            (
                &[],
                Some("only-cn.example"),
                Fallback,
                vec![dns("only-cn.example")],
            ),
            (&[], Some("only-cn.example"), Never, vec![]),
            (
                &["only-san.example"],
                None,
                Never,
                vec![dns("only-san.example")],
            ),
            // DNS names are lowercased; URIs kept as written.
            (
                &["Agent-A.Example"],
                None,
                Fallback,
                vec![dns("agent-a.example")],
            ),
            (
                &[spiffe],
                Some("admin.example"),
                Fallback,
                vec![Name::Uri(spiffe.into())],
            ),
            (
                &[spiffe, "x.example"],
                None,
                Fallback,
                vec![Name::Uri(spiffe.into()), dns("x.example")],
            ),
            // An IP SAN names no principal, and still rules the CN out.
            (&["127.0.0.1"], Some("admin.example"), Fallback, vec![]),
            (&[], None, Fallback, vec![]),
        ];
        for (sans, cn, policy, want) in cases {
            assert_eq!(
                &names(&der(sans, *cn)?, *policy),
                want,
                "{sans:?} {cn:?} {policy:?}"
            );
        }
        assert!(names(b"not a certificate", Fallback).is_empty());
        Ok(())
    }

    #[test]
    fn configured_names_match_by_kind_and_case() {
        let spiffe = "spiffe://example.org/agent";
        let cases = [
            (dns("agent.example"), "agent.example", true),
            (dns("agent.example"), "AGENT.example", true),
            (dns("agent.example"), "agent.example.evil", false),
            (dns("agent.example"), "spiffe://agent.example", false),
            (Name::Uri(spiffe.into()), spiffe, true),
            (
                Name::Uri(spiffe.into()),
                "spiffe://example.org/Agent",
                false,
            ),
            (Name::Uri(spiffe.into()), "example.org", false),
            (Name::Uri("spiffe://a".into()), "spiffe://a/", false),
        ];
        for (name, configured, want) in cases {
            assert_eq!(name.is(configured), want, "{name:?} vs {configured}");
        }
    }
}
