//! `[[tools]]`: command tools, tark's config-only tool plugins (a git helper,
//! say): each tool runs one program with an argv built from a template,
//! instead of calling into a wasm module.
//!
//! Such a plugin has no module. It must be of type `tool` and declare
//! `capabilities.shell`; its commands run only once the operator approved
//! that (see `crate::commands`). A tool's `cwd`, if any, must lie inside a
//! declared `fs_read` path, since the command can read nothing else; so must
//! each Unix socket it declares (`sockets`), the only ones it may connect to.

use serde::Deserialize;
use tark_proto::worker::v1::RiskLevel;

use super::{Capabilities, PluginType};
use crate::commands::template::Template;

/// Risk levels as tark names them; command tools default to `risky`.
const RISKS: [(&str, RiskLevel); 4] = [
    ("read-only", RiskLevel::ReadOnly),
    ("write", RiskLevel::Write),
    ("risky", RiskLevel::Risky),
    ("dangerous", RiskLevel::Dangerous),
];

/// One command tool, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandTool {
    pub name: String,
    pub description: String,
    /// An absolute path, or a bare name looked up on the jail's fixed PATH.
    pub command: String,
    pub args: Template,
    /// JSON schema of the arguments (from the manifest, or every placeholder
    /// a required string).
    pub parameters_schema: String,
    pub risk: RiskLevel,
    /// Where it runs, as written (an fs_read-style path); `/` when absent.
    pub cwd: Option<String>,
    /// Unix sockets it may connect to, as written (absolute paths inside
    /// declared `fs_read` entries); without any, it may make no Unix socket.
    pub sockets: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawTool {
    name: String,
    description: String,
    command: String,
    args: Vec<String>,
    parameters: Option<toml::Value>,
    risk: Option<String>,
    cwd: Option<String>,
    sockets: Vec<String>,
}

/// A tool name the agent can call: a letter, then letters, digits, `_`, `-`.
pub fn valid_tool_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    (1..=64).contains(&name.len())
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An absolute path without `.`/`..`, or a bare program name.
fn valid_command(command: &str) -> bool {
    if command.starts_with('/') {
        crate::broker::files::normalise(std::path::Path::new(command))
            .is_some_and(|p| p.as_os_str() == command)
    } else {
        !command.is_empty()
            && command.len() <= 255
            && !command.starts_with(['-', '.'])
            && command
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
    }
}

/// Validates `[[tools]]`, adding every problem found to `problems`.
pub fn validate(
    raw: Vec<RawTool>,
    plugin_type: Option<PluginType>,
    caps: &Capabilities,
    wasm_named: bool,
    problems: &mut Vec<String>,
) -> Vec<CommandTool> {
    if raw.is_empty() {
        return Vec::new();
    }
    if plugin_type.is_some_and(|t| t != PluginType::Tool) {
        problems
            .push("[[tools]] are command tools: only a plugin of type \"tool\" has them".into());
    }
    if !caps.shell {
        problems.push("[[tools]] run commands: declare capabilities.shell = true".into());
    }
    if wasm_named {
        problems.push(
            "a plugin has a wasm module (plugin.wasm) or command tools ([[tools]]), not both"
                .into(),
        );
    }
    let mut tools: Vec<CommandTool> = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        let at = format!("tools.{i}");
        let mut bad = |p: String| problems.push(format!("{at}: {p}"));
        if !valid_tool_name(&t.name) {
            bad(format!(
                "name {:?} must be a letter then letters, digits, _ or -",
                t.name
            ));
        } else if tools.iter().any(|o| o.name == t.name) {
            bad(format!("name {:?} is used twice", t.name));
        }
        if !valid_command(&t.command) {
            bad(format!(
                "command {:?} must be an absolute path or a program name (looked up on {})",
                t.command, "/usr/local/bin:/usr/bin:/bin"
            ));
        }
        let args = Template::parse(&t.args).unwrap_or_else(|e| {
            bad(format!("args: {e}"));
            Template::default()
        });
        let parameters_schema = match t.parameters {
            None => args.schema(),
            Some(toml::Value::String(json)) => {
                match serde_json::from_str::<serde_json::Value>(&json) {
                    Ok(v) if v.is_object() => json,
                    Ok(_) => {
                        bad("parameters must be a JSON schema object".into());
                        String::new()
                    }
                    Err(e) => {
                        bad(format!("parameters is not JSON: {e}"));
                        String::new()
                    }
                }
            }
            Some(v @ toml::Value::Table(_)) => serde_json::to_string(&v).unwrap_or_default(),
            Some(_) => {
                bad("parameters must be a JSON schema (a table, or JSON text)".into());
                String::new()
            }
        };
        let named = t.risk.as_deref().unwrap_or("risky");
        let risk = match RISKS.iter().find(|(name, _)| *name == named) {
            Some((_, level)) => *level,
            None => {
                let names: Vec<&str> = RISKS.iter().map(|(name, _)| *name).collect();
                bad(format!("risk {named:?} is not one of {}", names.join(", ")));
                RiskLevel::Unspecified
            }
        };
        if let Some(cwd) = &t.cwd
            && !(crate::broker::policy::valid_fs_entry(cwd)
                && caps
                    .fs_read
                    .iter()
                    .any(|f| crate::broker::policy::path_covers(f, cwd)))
        {
            bad(format!(
                "cwd {cwd:?} must be a path inside a declared capabilities.fs_read entry"
            ));
        }
        for socket in &t.sockets {
            let covered = socket.starts_with('/')
                && crate::broker::policy::valid_fs_entry(socket)
                && caps
                    .fs_read
                    .iter()
                    .any(|f| crate::broker::policy::path_covers(f, socket));
            if !covered {
                bad(format!(
                    "socket {socket:?} must be an absolute path inside a declared capabilities.fs_read entry"
                ));
            }
        }
        tools.push(CommandTool {
            name: t.name,
            description: t.description,
            command: t.command,
            args,
            parameters_schema,
            risk,
            cwd: t.cwd,
            sockets: t.sockets,
        });
    }
    tools
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_commands() {
        for (name, ok) in [
            ("git_status", true),
            ("g-1", true),
            ("1g", false),
            ("", false),
            ("a b", false),
        ] {
            assert_eq!(valid_tool_name(name), ok, "{name:?}");
        }
        let table = [
            ("git", true),
            ("python3.11", true),
            ("g++", true),
            ("/usr/bin/git", true),
            ("/", true),
            ("/usr/../bin/sh", false),
            ("/usr/bin/", false),
            ("bin/git", false),
            ("./git", false),
            ("-rf", false),
            ("", false),
            ("git status", false),
            ("$(id)", false),
        ];
        for (command, ok) in table {
            assert_eq!(valid_command(command), ok, "{command:?}");
        }
    }
}
