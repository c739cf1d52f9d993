//! Which components this host accepts: the package and version of the interface a
//! plugin's manifest type requires it to export. Checked at load, before anything
//! runs, so a wrong-world plugin is reported with what it does export.

use tark_proto::worker::v1 as pb;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::abi::Failure;

/// The package every supported world belongs to; any 0.1.x is accepted.
const PACKAGE: &str = "tark:plugin/";
const SUPPORTED_VERSION_PREFIX: &str = "@0.1.";

/// The export a plugin of this kind must provide.
pub fn required_export(kind: pb::PluginKind) -> Option<&'static str> {
    match kind {
        pb::PluginKind::Auth => Some("auth-plugin"),
        pb::PluginKind::Tool => Some("tool-plugin"),
        pb::PluginKind::Provider => Some("provider-plugin"),
        pb::PluginKind::Channel => Some("channel-plugin"),
        pb::PluginKind::Hook => Some("hook-plugin"),
        pb::PluginKind::Unspecified => None,
    }
}

/// The exported interface names of a component, e.g. `tark:plugin/tool-plugin@0.1.0`.
pub fn exports(engine: &Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Which contract a component was built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// tarkd's `tark:plugin@0.1.x` (`wit/tark.wit`).
    Versioned,
    /// tark's own unversioned `tark:plugin` (`wit/published/tark.wit`).
    Published,
}

/// Checks that the component exports the interface its manifest type promises,
/// from a contract this host supports, and says which. Done at load, so a
/// wrong-world plugin is reported, with what it does export, before anything runs.
pub fn check_world(
    exports: &[String],
    kind: pb::PluginKind,
) -> Result<(Contract, String), Failure> {
    let Some(iface) = required_export(kind) else {
        return Err(Failure::new(
            pb::FailureKind::BadRequest,
            "no plugin type given",
        ));
    };
    let want = format!("{PACKAGE}{iface}");
    let found = exports
        .iter()
        .find(|e| e.split('@').next() == Some(want.as_str()));
    let wrong = |message: String| Err(Failure::new(pb::FailureKind::WrongWorld, message));
    match found {
        Some(e) if e.contains(SUPPORTED_VERSION_PREFIX) => Ok((Contract::Versioned, e.clone())),
        Some(e) if *e == want && kind == pb::PluginKind::Hook => wrong(format!(
            "component exports {e} from tark's unversioned WIT, which has no hook world; build hooks against {want}@0.1.x"
        )),
        Some(e) if *e == want => Ok((Contract::Published, e.clone())),
        Some(e) => wrong(format!(
            "component exports {e}, but this tarkd supports {want}@0.1.x and tark's unversioned {want}"
        )),
        None => {
            let listed = if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports.join(", ")
            };
            wrong(format!(
                "component does not export {want}@0.1.x (or tark's unversioned {want}), so it is not a {iface:?} plugin (it exports {listed})"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn contracts_are_told_apart() {
        let versioned = check_world(
            &names(&["tark:plugin/tool-plugin@0.1.2"]),
            pb::PluginKind::Tool,
        );
        assert_eq!(
            versioned.ok(),
            Some((
                Contract::Versioned,
                "tark:plugin/tool-plugin@0.1.2".to_owned()
            ))
        );
        let published = check_world(&names(&["tark:plugin/tool-plugin"]), pb::PluginKind::Tool);
        assert_eq!(published.ok().map(|c| c.0), Some(Contract::Published));
        let refused = check_world(
            &names(&["tark:plugin/tool-plugin@0.2.0"]),
            pb::PluginKind::Tool,
        );
        assert_eq!(
            refused.err().map(|f| f.message),
            Some("component exports tark:plugin/tool-plugin@0.2.0, but this tarkd supports tark:plugin/tool-plugin@0.1.x and tark's unversioned tark:plugin/tool-plugin".to_owned())
        );
    }

    #[test]
    fn world_check_table() {
        use pb::FailureKind::{BadRequest, WrongWorld};
        use pb::PluginKind::{Auth, Channel, Hook, Provider, Tool, Unspecified};
        let cases: &[(&[&str], pb::PluginKind, Option<pb::FailureKind>)] = &[
            (&["tark:plugin/tool-plugin@0.1.0"], Tool, None),
            (&["tark:plugin/tool-plugin@0.1.7"], Tool, None),
            (&["tark:plugin/tool-plugin@0.2.0"], Tool, Some(WrongWorld)),
            (&["tark:plugin/tool-plugin"], Tool, None),
            (&["tark:plugin/provider-plugin"], Provider, None),
            (&["tark:plugin/channel-plugin"], Channel, None),
            (&["tark:plugin/auth-plugin"], Auth, None),
            (&["tark:plugin/hook-plugin"], Hook, Some(WrongWorld)),
            (&["tark:plugin/tool-plugin@1.0.0"], Tool, Some(WrongWorld)),
            (&["tark:plugin/hook-plugin@0.1.0"], Tool, Some(WrongWorld)),
            (&["evil:plugin/tool-plugin@0.1.0"], Tool, Some(WrongWorld)),
            (&["tark:plugin/tool-plugin-x@0.1.0"], Tool, Some(WrongWorld)),
            (&[], Tool, Some(WrongWorld)),
            (
                &["tark:plugin/tool-plugin@0.1.0"],
                Unspecified,
                Some(BadRequest),
            ),
            (&["tark:plugin/hook-plugin@0.1.0"], Hook, None),
            (&["tark:plugin/provider-plugin@0.1.3"], Provider, None),
            (&["tark:plugin/channel-plugin@0.1.0"], Channel, None),
            (&["tark:plugin/auth-plugin@0.1.0"], Auth, None),
            (
                &["tark:plugin/auth-plugin@0.1.0"],
                Provider,
                Some(WrongWorld),
            ),
        ];
        for (exports, kind, want) in cases {
            let got = check_world(&names(exports), *kind).err().map(|f| f.kind);
            assert_eq!(got, *want, "exports {exports:?} as {kind:?}");
        }
    }
}
