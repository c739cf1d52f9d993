//! An example tark tool plugin: notes kept in the plugin's private storage.
//!
//! It exercises the three host interfaces every plugin author meets first:
//! `storage` (notes live under `note:<title>`), `env` (`NOTES_AUTHOR` is stamped on
//! saved notes when the operator allows it) and `log`.

use serde::Deserialize;

wit_bindgen::generate!({
    world: "tool-world",
    path: "../../../wit",
});

use exports::tark::plugin::tool_plugin::{Guest, RiskLevel, ToolDef, ToolResult};
use tark::plugin::{env, log, storage};

const KEY_PREFIX: &str = "note:";
const MAX_TITLE: usize = 128;

struct Notes;

#[derive(Deserialize)]
struct SaveArgs {
    title: String,
    body: String,
}

#[derive(Deserialize)]
struct GetArgs {
    title: String,
}

fn parse<T: for<'de> Deserialize<'de>>(tool: &str, json: &str) -> Result<T, String> {
    serde_json::from_str(json).map_err(|e| format!("{tool}: invalid arguments: {e}"))
}

fn check_title(title: &str) -> Result<(), String> {
    if title.is_empty() || title.len() > MAX_TITLE {
        return Err(format!("title must be 1 to {MAX_TITLE} bytes"));
    }
    Ok(())
}

fn save(args: &str) -> Result<String, String> {
    let SaveArgs { title, body } = parse("notes_save", args)?;
    check_title(&title)?;
    let stored = match env::get("NOTES_AUTHOR") {
        Some(author) => format!("{body}\n-- {author}"),
        None => body,
    };
    storage::set(&format!("{KEY_PREFIX}{title}"), &stored)?;
    log::info(&format!("saved note {title:?} ({} bytes)", stored.len()));
    Ok(format!("saved {title}"))
}

fn get(args: &str) -> Result<String, String> {
    let GetArgs { title } = parse("notes_get", args)?;
    check_title(&title)?;
    storage::get(&format!("{KEY_PREFIX}{title}")).ok_or_else(|| format!("no note named {title:?}"))
}

fn list() -> Result<String, String> {
    let mut titles: Vec<String> = storage::list_keys()
        .into_iter()
        .filter_map(|k| k.strip_prefix(KEY_PREFIX).map(str::to_owned))
        .collect();
    titles.sort();
    serde_json::to_string(&titles).map_err(|e| e.to_string())
}

impl Guest for Notes {
    fn get_tools() -> Vec<ToolDef> {
        let title = r#""title":{"type":"string","maxLength":128}"#;
        vec![
            ToolDef {
                name: "notes_save".into(),
                description: "Save a note under a title, replacing any note of that title.".into(),
                parameters_schema: format!(
                    r#"{{"type":"object","properties":{{{title},"body":{{"type":"string"}}}},"required":["title","body"]}}"#
                ),
            },
            ToolDef {
                name: "notes_get".into(),
                description: "Read the note with the given title.".into(),
                parameters_schema: format!(
                    r#"{{"type":"object","properties":{{{title}}},"required":["title"]}}"#
                ),
            },
            ToolDef {
                name: "notes_list".into(),
                description: "List the titles of all saved notes as a JSON array.".into(),
                parameters_schema: r#"{"type":"object","properties":{}}"#.into(),
            },
        ]
    }

    fn get_risk_level(tool_name: String) -> RiskLevel {
        match tool_name.as_str() {
            "notes_save" => RiskLevel::Write,
            _ => RiskLevel::ReadOnly,
        }
    }

    fn execute(tool_name: String, arguments_json: String) -> ToolResult {
        let outcome = match tool_name.as_str() {
            "notes_save" => save(&arguments_json),
            "notes_get" => get(&arguments_json),
            "notes_list" => list(),
            other => Err(format!("unknown tool {other:?}")),
        };
        match outcome {
            Ok(out) => ToolResult::Success(out),
            Err(e) => ToolResult::Error(e),
        }
    }
}

export!(Notes);
