//! `tarkctl plugin new NAME --type T`: writes a plugin folder that builds and
//! installs as written: `Cargo.toml` on tark-plugin-sdk, `src/lib.rs` (a
//! small working plugin of the world: the repository's `sdk-<type>` example,
//! renamed), `plugin.toml` with
//! the fewest grants it needs, and a README with the build and install
//! commands. Needs no tarkd.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The plugin worlds `--type` takes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Auth,
    Tool,
    Provider,
    Hook,
    Channel,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Auth => "auth",
            Kind::Tool => "tool",
            Kind::Provider => "provider",
            Kind::Hook => "hook",
            Kind::Channel => "channel",
        }
    }

    /// The plugin of this world in `examples/plugins/sdk-<type>`, which the
    /// repository builds, installs and calls: the template is that example,
    /// so the two cannot drift apart. [`files`] puts the new plugin's name
    /// and variable in place of the example's.
    fn example(self) -> &'static str {
        match self {
            Kind::Auth => include_str!("../../../examples/plugins/sdk-auth/src/lib.rs"),
            Kind::Tool => include_str!("../../../examples/plugins/sdk-tool/src/lib.rs"),
            Kind::Provider => include_str!("../../../examples/plugins/sdk-provider/src/lib.rs"),
            Kind::Hook => include_str!("../../../examples/plugins/sdk-hook/src/lib.rs"),
            Kind::Channel => include_str!("../../../examples/plugins/sdk-channel/src/lib.rs"),
        }
    }

    /// The `[capabilities]` the template uses, and nothing more.
    fn capabilities(self, env: &str) -> String {
        match self {
            Kind::Tool => "storage = true\n".to_owned(),
            Kind::Auth => format!("storage = true\nenv = [\"{env}\"]\n"),
            Kind::Provider | Kind::Hook | Kind::Channel => {
                "# Nothing: add storage, http, env or fs_read as the plugin needs them.\n"
                    .to_owned()
            }
        }
    }
}

/// Whether `name` can be a plugin's (and its crate's) name: lowercase ASCII
/// letters, digits and single hyphens, starting with a letter, at most 64.
pub(crate) fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The files of a new plugin, by path inside its folder. `sdk` is the
/// dependency's source: `version = "0.1"` or `path = "..."`.
pub(crate) fn files(name: &str, kind: Kind, sdk: &str) -> Vec<(&'static str, String)> {
    let env = env_of(name);
    let example = format!("sdk-{}", kind.name());
    let source = kind
        .example()
        .replace(&env_of(&example), &env)
        .replace(&example, name);
    let fill = |t: &str| {
        t.replace("__NAME__", name)
            .replace("__TYPE__", kind.name())
            .replace("__SDK__", sdk)
            .replace("__ARTIFACT__", &name.replace('-', "_"))
            .replace("__ENV__", &env)
    };
    let manifest = format!(
        "[plugin]\nname = \"{name}\"\nversion = \"0.1.0\"\ntype = \"{}\"\ndescription = \"A {} plugin\"\n\n[capabilities]\n{}",
        kind.name(),
        kind.name(),
        kind.capabilities(&env)
    );
    vec![
        ("Cargo.toml", fill(include_str!("templates/Cargo.toml.in"))),
        ("src/lib.rs", source),
        ("plugin.toml", manifest),
        ("README.md", fill(include_str!("templates/README.md.in"))),
        (".gitignore", "/target\n".to_owned()),
    ]
}

/// The variable an auth plugin named `name` keeps its API key in.
fn env_of(name: &str) -> String {
    format!("{}_API_KEY", name.to_ascii_uppercase().replace('-', "_"))
}

/// Writes the folder (`dir`, default `./NAME`), which must not exist or be empty.
pub(crate) fn run(
    name: &str,
    kind: Kind,
    dir: Option<PathBuf>,
    sdk_path: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    if !valid_name(name) {
        bail!(
            "{name:?} cannot be a plugin name: use lowercase letters, digits and single hyphens, starting with a letter (at most 64)"
        );
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!("{} exists and is not empty", dir.display());
    }
    let sdk = match &sdk_path {
        Some(p) => format!("path = {:?}", p.display().to_string()),
        None => "version = \"0.1\"".to_owned(),
    };
    for (path, text) in files(name, kind, &sdk) {
        write(&dir.join(path), &text)?;
    }
    if json {
        crate::render::print_json(&serde_json::json!({
            "name": name, "type": kind.name(), "dir": dir.display().to_string(),
        }));
    } else {
        println!(
            "wrote {} ({} plugin): build with `cargo build --release --target wasm32-wasip1` in it, then `tarkctl plugin add ./` (its README says more)",
            dir.display(),
            kind.name()
        );
    }
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for (name, ok) in [
            ("my-plugin", true),
            ("a", true),
            ("tool2", true),
            ("My-plugin", false),
            ("2tool", false),
            ("-x", false),
            ("x-", false),
            ("x--y", false),
            ("x_y", false),
            ("", false),
            ("../x", false),
        ] {
            assert_eq!(valid_name(name), ok, "{name}");
        }
        assert!(!valid_name(&"a".repeat(65)));
    }

    #[test]
    fn every_placeholder_is_filled() {
        for kind in [
            Kind::Auth,
            Kind::Tool,
            Kind::Provider,
            Kind::Hook,
            Kind::Channel,
        ] {
            for (path, text) in files("my-plugin", kind, "version = \"0.1\"") {
                assert!(!text.contains("__"), "{kind:?} {path}: {text}");
                assert!(!text.contains("sdk-"), "{kind:?} {path}: {text}");
                assert!(!text.contains("SDK_"), "{kind:?} {path}: {text}");
            }
        }
    }
}
