use super::*;

fn rules(entries: &[&str]) -> Vec<HostRule> {
    entries
        .iter()
        .map(|e| parse_rule(e).unwrap_or_else(|r| panic!("{e}: {r}")))
        .collect()
}

fn decide(entries: &[&str], url: &str) -> Result<Allow, String> {
    let target = parse_target(url, false).map_err(|r| r.0)?;
    allowed(&rules(entries), &target).map_err(|r| r.0)
}

#[test]
fn entry_table() {
    let cases: &[(&str, Option<&str>)] = &[
        ("api.example.com", Some("api.example.com")),
        ("API.Example.COM", Some("api.example.com")),
        ("api.example.com.", Some("api.example.com")),
        ("*.googleapis.com", Some("*.googleapis.com")),
        ("*.GoogleAPIs.com.", Some("*.googleapis.com")),
        (
            "https://api.example.com:8443",
            Some("https://api.example.com:8443"),
        ),
        (
            "https://api.example.com:443",
            Some("https://api.example.com:443"),
        ),
        ("http://localhost:11434", Some("http://localhost:11434")),
        ("http://localhost", Some("http://localhost")),
        ("bücher.example", Some("xn--bcher-kva.example")),
        ("*.bücher.example", Some("*.xn--bcher-kva.example")),
        ("127.0.0.1", Some("127.0.0.1")),
        ("http://2130706433:8080", Some("http://127.0.0.1:8080")),
        ("[::1]", Some("[::1]")),
        ("http://[::1]:9000", Some("http://[::1]:9000")),
        ("*", None),
        ("*.", None),
        ("*.com", None),
        ("*.127.0.0.1", None),
        ("*.*.example.com", None),
        ("a.*.example.com", None),
        ("ftp://x.com", None),
        ("https://", None),
        ("", None),
        ("a..b", None),
        ("host:0", None),
        ("a.com:99999", None),
        ("user@a.com", None),
        ("https://ok.com@evil.com", None),
        ("a.com/x", None),
        ("a.com?x", None),
        ("a.com#x", None),
        ("a b.com", None),
        ("a%2ecom", None),
        ("a\\b.com", None),
        ("exa\u{0}mple.com", None),
    ];
    for (entry, want) in cases {
        let got = parse_rule(entry).ok().map(|r| r.to_string());
        assert_eq!(got.as_deref(), *want, "{entry:?}");
    }
}

#[test]
fn target_table() {
    /// (URL, normalised (host, scheme, port) or part of the refusal)
    type Case<'a> = (&'a str, Result<(&'a str, Scheme, u16), &'a str>);
    let cases: &[Case] = &[
        (
            "https://api.example.com/v1",
            Ok(("api.example.com", Scheme::Https, 443)),
        ),
        (
            "HTTPS://API.EXAMPLE.COM./v1",
            Ok(("api.example.com", Scheme::Https, 443)),
        ),
        ("http://x.org:8080/", Ok(("x.org", Scheme::Http, 8080))),
        (
            "https://bücher.example/",
            Ok(("xn--bcher-kva.example", Scheme::Https, 443)),
        ),
        (
            "https://%61pi.example.com/",
            Ok(("api.example.com", Scheme::Https, 443)),
        ),
        ("http://2130706433/", Ok(("127.0.0.1", Scheme::Http, 80))),
        ("http://0x7f.1/", Ok(("127.0.0.1", Scheme::Http, 80))),
        ("http://0177.0.0.1/", Ok(("127.0.0.1", Scheme::Http, 80))),
        ("http://127.1/", Ok(("127.0.0.1", Scheme::Http, 80))),
        ("http://0x7f000001/", Ok(("127.0.0.1", Scheme::Http, 80))),
        (
            "http://[::ffff:127.0.0.1]/",
            Ok(("[::ffff:7f00:1]", Scheme::Http, 80)),
        ),
        ("http://[0:0:0:0:0:0:0:1]/", Ok(("[::1]", Scheme::Http, 80))),
        ("https://ok.com@evil.com/", Err("user info")),
        ("https://ok.com:pw@evil.com/", Err("user info")),
        ("https://:pw@evil.com/", Err("user info")),
        ("ftp://example.com/", Err("only http and https")),
        ("file:///etc/passwd", Err("only http and https")),
        ("gopher://x/", Err("only http and https")),
        ("javascript:alert(1)", Err("only http and https")),
        ("not a url", Err("not a valid URL")),
        ("https://", Err("not a valid URL")),
        ("http://1.2.3.999/", Err("not a valid URL")),
        ("ws://example.com/", Err("only http and https")),
    ];
    for (url, want) in cases {
        let got = parse_target(url, false);
        match (want, got) {
            (Ok((host, scheme, port)), Ok(t)) => {
                assert_eq!(
                    (t.host_str().as_str(), t.scheme, t.port),
                    (*host, *scheme, *port),
                    "{url}"
                )
            }
            (Err(want), Err(r)) => assert!(r.0.contains(want), "{url}: {}", r.0),
            (want, got) => panic!("{url}: want {want:?}, got {got:?}"),
        }
    }
    assert!(parse_target(&format!("https://a.com/{}", "x".repeat(MAX_URL_LEN)), false).is_err());
}

#[test]
fn websocket_targets_use_ws_schemes() {
    let t = parse_target("wss://chat.example.com/socket", true);
    assert!(t.is_ok_and(|t| t.scheme == Scheme::Https && t.port == 443));
    let t = parse_target("ws://chat.example.com:9000/", true);
    assert!(t.is_ok_and(|t| t.scheme == Scheme::Http && t.port == 9000));
    assert!(parse_target("https://chat.example.com/", true).is_err());
}

#[test]
fn allowlist_table() {
    use Allow::*;
    let api = &["api.example.com"][..];
    let wild = &["*.example.com"][..];
    let cases: &[(&[&str], &str, Result<Allow, &str>)] = &[
        (api, "https://api.example.com/x", Ok(Named)),
        (api, "https://API.example.com./x", Ok(Named)),
        (api, "https://api.example.com:443/x", Ok(Named)),
        (
            api,
            "http://api.example.com/x",
            Err("plain http needs an entry naming http://"),
        ),
        (
            api,
            "https://api.example.com:8443/x",
            Err("do not allow this scheme and port"),
        ),
        (
            api,
            "https://example.com/",
            Err("not in the plugin's http allowlist"),
        ),
        (
            api,
            "https://sub.api.example.com/",
            Err("not in the plugin's http allowlist"),
        ),
        (
            api,
            "https://api.example.com.evil.com/",
            Err("not in the plugin's http allowlist"),
        ),
        (
            api,
            "https://apiXexample.com/",
            Err("not in the plugin's http allowlist"),
        ),
        (wild, "https://a.example.com/", Ok(Covered)),
        (wild, "https://a.b.example.com/", Ok(Covered)),
        (
            wild,
            "https://example.com/",
            Err("not in the plugin's http allowlist"),
        ),
        (
            wild,
            "https://badexample.com/",
            Err("not in the plugin's http allowlist"),
        ),
        (
            wild,
            "https://example.com.evil.net/",
            Err("not in the plugin's http allowlist"),
        ),
        (wild, "http://a.example.com/", Err("do not allow")),
        (
            &["*.example.com", "login.example.com"],
            "https://login.example.com/",
            Ok(Named),
        ),
        (
            &["https://api.example.com:8443"],
            "https://api.example.com:8443/",
            Ok(Named),
        ),
        (
            &["https://api.example.com:8443"],
            "https://api.example.com/",
            Err("do not allow"),
        ),
        (
            &["http://localhost:11434"],
            "http://localhost:11434/api",
            Ok(Named),
        ),
        (
            &["http://localhost:11434"],
            "https://localhost:11434/api",
            Err("do not allow"),
        ),
        (
            &["http://localhost:11434"],
            "http://localhost:11435/",
            Err("do not allow"),
        ),
        (
            &["http://localhost:11434"],
            "http://127.0.0.1:11434/",
            Err("IP address"),
        ),
        (&["localhost"], "http://2130706433/", Err("IP address")),
        (&["localhost"], "http://0x7f.1/", Err("IP address")),
        (
            &["localhost"],
            "http://[::ffff:127.0.0.1]/",
            Err("IP address"),
        ),
        (
            &["http://127.0.0.1:8080"],
            "http://2130706433:8080/",
            Ok(Named),
        ),
        (
            &["http://127.0.0.1:8080"],
            "http://0x7f.0.0.1:8080/",
            Ok(Named),
        ),
        (
            &["http://127.0.0.1:8080"],
            "http://127.0.0.2:8080/",
            Err("IP address"),
        ),
        (&["http://[::1]:8080"], "http://[0::1]:8080/", Ok(Named)),
        (
            &["https://ok.com"],
            "https://ok.com@evil.com/",
            Err("user info"),
        ),
        (
            &["bücher.example"],
            "https://xn--bcher-kva.example/",
            Ok(Named),
        ),
        (
            &["xn--bcher-kva.example"],
            "https://BÜCHER.example/",
            Ok(Named),
        ),
        (
            &[],
            "https://api.example.com/",
            Err("not in the plugin's http allowlist"),
        ),
    ];
    for (entries, url, want) in cases {
        let got = decide(entries, url);
        match (want, &got) {
            (Ok(w), Ok(g)) => assert_eq!(w, g, "{entries:?} {url}"),
            (Err(w), Err(g)) => assert!(g.contains(w), "{entries:?} {url}: {g}"),
            _ => panic!("{entries:?} {url}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn covers_table() {
    let cases: &[(&str, &str, bool)] = &[
        ("api.example.com", "api.example.com", true),
        ("api.example.com", "API.example.com.", true),
        ("api.example.com", "https://api.example.com", true),
        ("api.example.com", "https://api.example.com:443", true),
        ("api.example.com", "http://api.example.com", false),
        ("api.example.com", "api.example.com:8443", false),
        ("api.example.com", "*.api.example.com", false),
        ("*.example.com", "api.example.com", true),
        ("*.example.com", "*.api.example.com", true),
        ("*.example.com", "*.example.com", true),
        ("*.example.com", "example.com", false),
        ("*.example.com", "*.com.example", false),
        ("*.api.example.com", "*.example.com", false),
        ("http://localhost:11434", "http://localhost:11434", true),
        ("http://localhost:11434", "localhost", false),
        ("127.0.0.1", "127.0.0.1", true),
        ("*.example.com", "127.0.0.1", false),
    ];
    for (a, b, want) in cases {
        let (a_rule, b_rule) = (parse_rule(a), parse_rule(b));
        assert!(a_rule.is_ok() && b_rule.is_ok(), "{a} / {b}");
        if let (Ok(a_rule), Ok(b_rule)) = (a_rule, b_rule) {
            assert_eq!(a_rule.covers(&b_rule), *want, "{a} covers {b}");
        }
    }
}
