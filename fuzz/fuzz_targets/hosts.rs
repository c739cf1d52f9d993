//! Allowlist entries and URLs: nothing panics, entries print in a form that
//! parses back to the same rule, and no IP literal is allowed except by an entry
//! naming that exact address.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tarkd::broker::hosts::{self, HostPattern, parse_rule, parse_target};
use url::Host;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "entry1\nentry2\n...\nurl": the last line is the URL.
    let mut lines: Vec<&str> = text.split('\n').collect();
    let url = lines.pop().unwrap_or("");
    let mut rules = Vec::new();
    for entry in lines {
        if let Ok(rule) = parse_rule(entry) {
            let again = parse_rule(&rule.to_string());
            assert_eq!(again.as_ref(), Ok(&rule), "{entry:?} printed as {rule}");
            rules.push(rule);
        }
    }
    for websocket in [false, true] {
        let Ok(target) = parse_target(url, websocket) else {
            continue;
        };
        assert!(target.url.username().is_empty() && target.url.password().is_none());
        let Ok(_allow) = hosts::allowed(&rules, &target) else {
            continue;
        };
        match &target.host {
            Host::Domain(d) => {
                assert!(!d.ends_with('.') && d.bytes().all(|b| !b.is_ascii_uppercase()));
            }
            ip => assert!(
                rules
                    .iter()
                    .any(|r| r.host == HostPattern::Exact(ip.clone())),
                "{url:?} allowed without an entry naming {ip}"
            ),
        }
        if let Host::Ipv4(a) = target.host {
            let _ = tarkd::broker::addresses::restricted(std::net::IpAddr::V4(a));
        }
        if let Host::Ipv6(a) = target.host {
            let _ = tarkd::broker::addresses::restricted(std::net::IpAddr::V6(a));
        }
    }
});
