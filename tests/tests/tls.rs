//! The TCP listener with mutual TLS, through a real tarkd and real TLS
//! clients: a client certificate signed by `api.client_ca` names a principal
//! (by DNS SAN or CN), which acts only for its tenants; a certificate from
//! another CA, an expired one and none at all are refused in the handshake,
//! and a valid one that names no principal is refused and audited.

use tark_tests::tls::{Ca, list_tools, listener_config};
use tark_tests::{Options, PluginFiles, Tarkd};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_names_the_principal_and_refuses_the_rest() -> anyhow::Result<()> {
    let (ca, other_ca) = (Ca::new("tarkd clients")?, Ca::new("someone else")?);
    let dir = tempfile::tempdir()?;
    let (listener, port) = listener_config(&ca, dir.path())?;
    let config = format!(
        r#"{listener}
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
