//! Signed packages through tarkctl and a real tarkd: keys made by `tarkctl
//! keygen`, packages signed by `tarkctl plugin sign`, trust roots managed by
//! `tarkctl trust`. Refused: unsigned (where required), an unknown key, a
//! tampered file (before install, and in the installed copy), an expired key,
//! a key rotated away, a revoked key, and a downgrade to an older signed
//! version unless it is an explicit rollback.

use std::path::Path;

use tark_proto::plugin::v1 as pb;
use tark_tests::{Failed, Options, Tarkd, for_tenant, invoke, output};
use tonic::Code;

fn refused(r: Result<String, String>, words: &str) {
    match r {
        Err(e) => assert!(e.contains(words), "refused, but not for {words:?}: {e}"),
        Ok(out) => panic!("not refused ({words}): {out}"),
    }
}

fn gadget(dir: &Path, version: &str, prefix: &str) -> anyhow::Result<String> {
    let dir_arg = tark_tests::fixtures::gadget(dir, version, prefix, "")?;
    std::fs::create_dir_all(dir.join("data"))?;
    std::fs::write(dir.join("data/readme.txt"), "data files are signed too")?;
    Ok(dir_arg)
}

fn keygen(t: &Tarkd, dir: &Path, name: &str) -> anyhow::Result<(String, String, String)> {
    let key = dir.join(name);
    let out = t
        .ctl(&["--json", "keygen", "--out", &key.display().to_string()])?
        .map_err(anyhow::Error::msg)?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let id = v["key_id"].as_str().unwrap_or_default().to_owned();
    Ok((
        key.display().to_string(),
        key.with_extension("pub").display().to_string(),
        id,
    ))
}

fn sign(t: &Tarkd, key: &str, dir: &str) -> anyhow::Result<()> {
    t.ctl(&["plugin", "sign", "--key", key, dir])?
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

async fn call(t: &Tarkd, tool: &str) -> anyhow::Result<tonic::Status> {
    let r = t.tools().await?.invoke_tool(invoke(tool, "{}")).await;
    Ok(match output(r) {
        Ok(_) => tonic::Status::ok("served"),
        Err(e) => tonic::Status::unknown(e),
    })
}

async fn signature(t: &Tarkd) -> anyhow::Result<(String, String)> {
    let info = t.plugin_info("gadget").await?;
    Ok((info.signer, info.signature))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_trusted_unchanged_signed_packages_install_and_serve() -> anyhow::Result<()> {
    let t = Tarkd::start(vec![], Options::config("[policy]\nrequire_signed = true\n"))?;
    let work = tempfile::tempdir()?;
    let w = work.path();
    let v1 = gadget(&w.join("v1"), "1.0.0", "g1")?;
    let v2 = gadget(&w.join("v2"), "2.0.0", "g2")?;
    let (a_key, a_pub, a) = keygen(&t, w, "a.key")?;

    refused(
        t.ctl(&["plugin", "add", &v1, "--yes"])?,
        "plugin gadget is not signed, and policy.require_signed is set",
    );
    sign(&t, &a_key, &v1)?;
    refused(
        t.ctl(&["plugin", "add", &v1, "--yes"])?,
        &format!("signed by key {a}, which is not trusted"),
    );
    let said = t
        .ctl(&["trust", "add", &a_pub, "--comment", "release"])?
        .map_err(anyhow::Error::msg)?;
    assert!(said.starts_with(&format!("{a}  trusted")), "{said}");
    let said = t
        .ctl(&["plugin", "add", &v1, "--yes"])?
        .map_err(anyhow::Error::msg)?;
    assert!(
        said.contains(&format!("signed by key {a}: verified")),
        "{said}"
    );
    assert_eq!(signature(&t).await?, (a.clone(), "verified".to_owned()));
    assert_eq!(call(&t, "g1-ok").await?.code(), Code::Ok);

    // A file added after signing: the package is not the one signed.
    sign(&t, &a_key, &v2)?;
    std::fs::write(w.join("v2/data/extra.txt"), "slipped in")?;
    refused(
        t.ctl(&["plugin", "add", &v2, "--yes"])?,
        "the package changed since it was signed",
    );
    std::fs::remove_file(w.join("v2/data/extra.txt"))?;
    t.ctl(&["plugin", "update", "gadget", &v2, "--yes"])?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(call(&t, "g2-ok").await?.code(), Code::Ok);

    // Back to the older signed version: refused as an update, allowed as a rollback.
    refused(
        t.ctl(&["plugin", "update", "gadget", &v1, "--yes"])?,
        "1.0.0 is older than the installed 2.0.0, which is signed: a downgrade is refused",
    );
    t.ctl(&["plugin", "rollback", "gadget", "--to", "1.0.0"])?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(call(&t, "g1-ok").await?.code(), Code::Ok);
    t.ctl(&["plugin", "rollback", "gadget"])?
        .map_err(anyhow::Error::msg)?;

    // The installed copy tampered with on disk: the reload that would take it is refused.
    let installed = t.dir.path().join("plugins/gadget/data/readme.txt");
    std::fs::write(&installed, "edited in place")?;
    refused(
        t.ctl(&["plugin", "reload"])?,
        "plugin gadget: signature refused: the package changed since it was signed",
    );
    assert_eq!(call(&t, "g2-ok").await?.code(), Code::Ok);
    std::fs::write(&installed, "data files are signed too")?;

    // An expired key.
    let (c_key, c_pub, c) = keygen(&t, w, "c.key")?;
    t.ctl(&["trust", "add", &c_pub, "--expires", "2000-01-01T00:00:00Z"])?
        .map_err(anyhow::Error::msg)?;
    let v3 = gadget(&w.join("v3"), "3.0.0", "g3")?;
    sign(&t, &c_key, &v3)?;
    refused(
        t.ctl(&["plugin", "update", "gadget", &v3, "--yes"])?,
        &format!("signed by key {c}, which expired at 2000-01-01T00:00:00Z"),
    );

    // Rotation from a to b: what a signed stops serving; b's signature installs.
    let (b_key, b_pub, b) = keygen(&t, w, "b.key")?;
    t.ctl(&["trust", "add", &b_pub, "--rotate-from", &a])?
        .map_err(anyhow::Error::msg)?;
    let listed = t.ctl(&["trust", "list"])?.map_err(anyhow::Error::msg)?;
    assert!(listed.contains(&format!("{a}  rotated to {b}")), "{listed}");
    assert!(
        listed.contains(&format!("{b}  trusted (replaces {a})")),
        "{listed}"
    );
    let err = t
        .tools()
        .await?
        .invoke_tool(invoke("g2-ok", "{}"))
        .await
        .failed();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message()
            .contains(&format!("signed by key {a}, which was rotated to {b}")),
        "{err:?}"
    );
    sign(&t, &b_key, &v3)?;
    t.ctl(&["plugin", "update", "gadget", &v3, "--yes"])?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(signature(&t).await?, (b.clone(), "verified".to_owned()));
    assert_eq!(call(&t, "g3-ok").await?.code(), Code::Ok);

    // Revoked: it stops serving at once and is never trusted again.
    t.ctl(&["trust", "revoke", &b])?
        .map_err(anyhow::Error::msg)?;
    let err = t
        .tools()
        .await?
        .invoke_tool(invoke("g3-ok", "{}"))
        .await
        .failed();
    assert!(
        err.message()
            .contains(&format!("signed by key {b}, revoked at")),
        "{err:?}"
    );
    assert!(signature(&t).await?.1.starts_with("refused: signed by key"));
    refused(
        t.ctl(&["trust", "add", &b_pub])?,
        "a revoked key is never trusted again",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_can_require_signed_plugins_alone() -> anyhow::Result<()> {
    let t = Tarkd::start(
        vec![],
        Options::config("[tenants.acme.policy]\nrequire_signed = true\n[tenants.default]\n"),
    )?;
    let work = tempfile::tempdir()?;
    let v1 = gadget(&work.path().join("v1"), "1.0.0", "g1")?;
    t.ctl(&["plugin", "add", &v1, "--yes"])?
        .map_err(anyhow::Error::msg)?;
    let mut tools = t.tools().await?;
    output(tools.invoke_tool(invoke("g1-ok", "{}")).await).map_err(anyhow::Error::msg)?;
    let err = tools
        .invoke_tool(for_tenant(invoke("g1-ok", "{}"), "acme"))
        .await
        .failed();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        err.message(),
        "plugin gadget is not signed, and tenant acme requires signed plugins (tarkctl plugin sign)"
    );
    let info = t.plugin_info("gadget").await?;
    assert_eq!(
        (info.signer.as_str(), info.signature.as_str()),
        ("", "unsigned")
    );
    let _ = pb::PluginState::Idle;
    Ok(())
}
