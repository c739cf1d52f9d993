//! The names a client certificate carries, for matching `[[principals]] cert`:
//! its subject alternative DNS names, then its subject's common names. The
//! certificate has already been verified against `api.client_ca` (chain,
//! validity period) by the TLS handshake; this only reads it.

use x509_parser::extensions::GeneralName;

/// The certificate's DNS SANs and CNs, in that order; empty if it cannot be
/// parsed (a verified certificate always can).
pub fn names(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(dns) = name {
                names.push((*dns).to_owned());
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        if let Ok(cn) = cn.as_str() {
            names.push(cn.to_owned());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair};

    use super::*;

    fn der(sans: &[&str], cn: Option<&str>) -> Result<Vec<u8>, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut p =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())?;
        p.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            p.distinguished_name.push(DnType::CommonName, cn);
        }
        Ok(p.self_signed(&key)?.der().to_vec())
    }

    #[test]
    fn names_are_sans_then_common_names() -> Result<(), rcgen::Error> {
        let cases: &[(&[&str], Option<&str>, &[&str])] = &[
            (
                &["a.example", "b.example"],
                Some("c.example"),
                &["a.example", "b.example", "c.example"],
            ),
            (&[], Some("only-cn"), &["only-cn"]),
            (&["only-san.example"], None, &["only-san.example"]),
            (&["127.0.0.1"], None, &[]), // an IP SAN is no name
            (&[], None, &[]),
        ];
        for (sans, cn, want) in cases {
            assert_eq!(names(&der(sans, *cn)?), *want, "{sans:?} {cn:?}");
        }
        assert!(names(b"not a certificate").is_empty());
        Ok(())
    }
}
