//! Client certificates on the TCP listener: a certificate whose SAN names an
//! agent and whose subject CN names the admin was the admin (the CN was
//! matched beside the SANs). Now SANs alone identify a certificate that has
//! them (DNS names in any case, URI SANs such as SPIFFE IDs exactly), and the
//! CN only one that has none (RFC 6125).

use tark_tests::tls::{Ca, list_tools, listener_config};
use tark_tests::{Options, Tarkd};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_is_its_sans_not_its_common_name() -> anyhow::Result<()> {
    let ca = Ca::new("tarkd clients")?;
    let dir = tempfile::tempdir()?;
    let (listener, port) = listener_config(&ca, dir.path())?;
    let config = format!(
        r#"{listener}
[[principals]]
name = "admin"
cert = "admin.example"
role = "admin"

[[principals]]
name = "agent-a"
cert = "agent-a.example"
tenants = ["team-a"]
role = "agent"

[[principals]]
name = "workload-s"
cert = "spiffe://example.org/ns/tark/sa/agent-s"
tenants = ["team-s"]
role = "agent"
"#
    );
    let _t = Tarkd::start(Vec::new(), Options::config(&config))?;
    // Who a certificate is: acting for team-b succeeds only for the admin;
    // anyone else is refused naming the principal it was taken for.
    let who = |leaf: (String, String)| {
        let ca = ca.pem.clone();
        async move {
            match list_tools(port, &ca, Some(&leaf), Some("team-b")).await {
                Ok(_) => "admin".to_owned(),
                Err(s) if s.code() == Code::PermissionDenied => s
                    .message()
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned(),
                Err(s) if s.code() == Code::Unauthenticated => "nobody".to_owned(),
                Err(s) => format!("{s:?}"),
            }
        }
    };
    let spiffe = "spiffe://example.org/ns/tark/sa/agent-s";
    let cases: &[(&[&str], Option<&str>, &str)] = &[
        // The attack: SAN agent-a, CN admin.
        (&["agent-a.example"], Some("admin.example"), "agent-a"),
        (&["stranger.example"], Some("admin.example"), "nobody"),
        (
            &["stranger.example", "agent-a.example"],
            Some("admin.example"),
            "agent-a",
        ),
        (&["AGENT-A.example"], None, "agent-a"),
        (&[spiffe], Some("admin.example"), "workload-s"),
        (&["spiffe://example.org/ns/tark/sa/AGENT-S"], None, "nobody"),
        (&["spiffe://admin.example"], None, "nobody"),
        // No SAN at all: the CN is the name.
        (&[], Some("admin.example"), "admin"),
        (&[], Some("Agent-A.Example"), "agent-a"),
    ];
    for (sans, cn, want) in cases {
        let got = who(ca.leaf_with(sans, *cn)?).await;
        assert_eq!(got, *want, "SANs {sans:?}, CN {cn:?}");
    }
    Ok(())
}
