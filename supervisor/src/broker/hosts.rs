//! Host allowlists: the `capabilities.http` entries and the URLs plugins ask for.
//!
//! An entry is an exact host or `*.suffix` (subdomains only), optionally with a
//! scheme and a port: `api.example.com`, `*.googleapis.com`,
//! `https://api.example.com:8443`, `http://localhost:11434`. Without a scheme only
//! `https` is allowed; without a port only the scheme's default port. Both sides are
//! parsed by the WHATWG URL parser (the one browsers use), so case, trailing dots,
//! IDNA, percent-encoding and the many spellings of an IPv4 address
//! (`2130706433`, `0x7f.1`, `0177.0.0.1`) are normalised before anything is
//! compared. An IP literal is reachable only through an entry naming that exact
//! address.

use std::fmt;

use url::{Host, Url};

/// The two schemes a plugin may use (`ws`/`wss` are checked as `http`/`https`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// Which hosts an entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// This host only: a normalised domain or an IP address.
    Exact(Host<String>),
    /// Proper subdomains of this normalised domain (`*.example.com` does not
    /// match `example.com`).
    Suffix(String),
}

/// One parsed allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    pub scheme: Option<Scheme>,
    pub host: HostPattern,
    pub port: Option<u16>,
}

/// Why a URL or an entry was refused; the text is what the plugin is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

fn refuse(msg: impl Into<String>) -> Refusal {
    Refusal(msg.into())
}

/// A URL a plugin asked for, parsed and normalised.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: Url,
    pub scheme: Scheme,
    pub host: Host<String>,
    pub port: u16,
}

impl Target {
    /// The host as written in messages and in the audit log.
    pub fn host_str(&self) -> String {
        self.host.to_string()
    }
}

/// What an allowlist decided about a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// tarkd's own `[policy]` names this exact host too: any address, a
    /// cloud metadata service's included.
    Policy,
    /// An entry names this exact host: its addresses may be private (the
    /// operator said so by naming it), but not a cloud metadata service's,
    /// which only tarkd's own policy can open.
    Named,
    /// A `*.suffix` entry covers it: only public addresses.
    Covered,
}

/// Longest URL tarkd parses.
pub const MAX_URL_LEN: usize = 8192;

/// Parses an allowlist entry into its canonical form.
pub fn parse_rule(entry: &str) -> Result<HostRule, Refusal> {
    let bad = || {
        refuse(format!(
            "{entry:?} is not a host, *.suffix or scheme://host[:port]"
        ))
    };
    let (scheme, rest) = if let Some(r) = entry.strip_prefix("https://") {
        (Some(Scheme::Https), r)
    } else if let Some(r) = entry.strip_prefix("http://") {
        (Some(Scheme::Http), r)
    } else {
        (None, entry)
    };
    let (wildcard, rest) = match rest.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, rest),
    };
    // Only a host and a port: anything the URL parser would treat as a path,
    // query, fragment or user info is not an entry.
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', '\\', '*', '%']) || rest.len() > 300 {
        return Err(bad());
    }
    let url = Url::parse(&format!(
        "{}://{rest}",
        scheme.unwrap_or(Scheme::Https).as_str()
    ))
    .map_err(|_| bad())?;
    let host = normalise(url.host().ok_or_else(bad)?).ok_or_else(bad)?;
    // The parser drops a port equal to the scheme's default; an entry that wrote
    // it still means that port.
    let port = url.port().or_else(|| {
        rest.rsplit_once(':')
            .filter(|(_, p)| !p.contains(']'))
            .and_then(|(_, p)| p.parse().ok())
    });
    if port == Some(0) {
        return Err(bad());
    }
    let host = match (wildcard, host) {
        (false, h) => HostPattern::Exact(h),
        // `*.com` would be a whole top-level domain: a suffix needs two labels.
        (true, Host::Domain(d)) if d.contains('.') => HostPattern::Suffix(d),
        (true, _) => return Err(bad()),
    };
    Ok(HostRule { scheme, host, port })
}

/// A host in the form rules and targets are compared in: ASCII, lowercase,
/// without a trailing dot; `None` for anything DNS could not carry (empty
/// labels, labels over 63 bytes, characters beyond letters, digits, `-`, `_`).
fn normalise(host: Host<&str>) -> Option<Host<String>> {
    match host {
        Host::Domain(d) => {
            let d = d.strip_suffix('.').unwrap_or(d);
            let label_ok = |l: &str| {
                (1..=63).contains(&l.len())
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            (d.len() <= 253 && d.split('.').all(label_ok))
                .then(|| Host::Domain(d.to_ascii_lowercase()))
        }
        Host::Ipv4(a) => Some(Host::Ipv4(a)),
        Host::Ipv6(a) => Some(Host::Ipv6(a)),
    }
}

/// Parses a URL a plugin asked for. `websocket` accepts `ws`/`wss` (checked as
/// `http`/`https`) instead of `http`/`https`.
pub fn parse_target(raw: &str, websocket: bool) -> Result<Target, Refusal> {
    if raw.len() > MAX_URL_LEN {
        return Err(refuse(format!("URL is longer than {MAX_URL_LEN} bytes")));
    }
    let url = Url::parse(raw).map_err(|e| refuse(format!("{raw:?} is not a valid URL: {e}")))?;
    let scheme = match (url.scheme(), websocket) {
        ("https", false) | ("wss", true) => Scheme::Https,
        ("http", false) | ("ws", true) => Scheme::Http,
        (other, false) => {
            return Err(refuse(format!(
                "scheme {other:?} is not allowed: only http and https"
            )));
        }
        (other, true) => {
            return Err(refuse(format!(
                "scheme {other:?} is not allowed: only ws and wss"
            )));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(format!(
            "URLs carrying user info are refused ({raw:?}): put credentials in a header"
        )));
    }
    let host = url
        .host()
        .and_then(normalise)
        .ok_or_else(|| refuse(format!("{raw:?} has no host")))?;
    let mut url = url;
    if let Host::Domain(d) = &host {
        // The URL carries the normalised name too (no trailing dot), so the name
        // that is resolved is the name that was checked.
        url.set_host(Some(d))
            .map_err(|e| refuse(format!("{raw:?}: {e}")))?;
    }
    let port = url.port().unwrap_or(scheme.default_port());
    Ok(Target {
        url,
        scheme,
        host,
        port,
    })
}

impl HostRule {
    fn host_matches(&self, host: &Host<String>) -> bool {
        match (&self.host, host) {
            (HostPattern::Exact(h), host) => h == host,
            (HostPattern::Suffix(s), Host::Domain(d)) => d
                .strip_suffix(s.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            (HostPattern::Suffix(_), _) => false,
        }
    }

    fn scheme_port_match(&self, scheme: Scheme, port: u16) -> bool {
        let want = self.scheme.unwrap_or(Scheme::Https);
        want == scheme && self.port.unwrap_or(want.default_port()) == port
    }

    /// Whether everything `other` allows, this rule allows too: an approval must
    /// be no wider than the declaration it narrows, and policy caps both.
    pub fn covers(&self, other: &HostRule) -> bool {
        let scheme = other.scheme.unwrap_or(Scheme::Https);
        if !self.scheme_port_match(scheme, other.port.unwrap_or(scheme.default_port())) {
            return false;
        }
        match (&self.host, &other.host) {
            (_, HostPattern::Exact(h)) => self.host_matches(h),
            (HostPattern::Suffix(s), HostPattern::Suffix(o)) => {
                o == s || self.host_matches(&Host::Domain(o.clone()))
            }
            (HostPattern::Exact(_), HostPattern::Suffix(_)) => false,
        }
    }
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = self.scheme {
            write!(f, "{}://", s.as_str())?;
        }
        match &self.host {
            HostPattern::Exact(h) => write!(f, "{h}")?,
            HostPattern::Suffix(s) => write!(f, "*.{s}")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Whether `rules` allow `target`, and how.
pub fn allowed(rules: &[HostRule], target: &Target) -> Result<Allow, Refusal> {
    let host_rules: Vec<&HostRule> = rules
        .iter()
        .filter(|r| r.host_matches(&target.host))
        .collect();
    let matching = || {
        host_rules
            .iter()
            .filter(|r| r.scheme_port_match(target.scheme, target.port))
    };
    if matching().any(|r| matches!(r.host, HostPattern::Exact(_))) {
        return Ok(Allow::Named);
    }
    if matching().next().is_some() {
        return Ok(Allow::Covered);
    }
    let shown = format!(
        "{}://{}:{}",
        target.scheme.as_str(),
        target.host,
        target.port
    );
    if host_rules.is_empty() {
        let what = match target.host {
            Host::Domain(_) => "host",
            _ => "IP address (only an entry naming that exact address allows one)",
        };
        return Err(refuse(format!(
            "{shown} denied: {what} {} is not in the plugin's http allowlist",
            target.host
        )));
    }
    let entries: Vec<String> = host_rules.iter().map(|r| r.to_string()).collect();
    let hint = if target.scheme == Scheme::Http {
        " (plain http needs an entry naming http://)"
    } else {
        ""
    };
    Err(refuse(format!(
        "{shown} denied: the allowlist entries for this host ({}) do not allow this scheme and port{hint}",
        entries.join(", ")
    )))
}

#[cfg(test)]
mod tests;
