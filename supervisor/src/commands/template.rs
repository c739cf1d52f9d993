//! A command tool's argv: the manifest's `args`, each with `{name}`
//! placeholders filled from the call's JSON arguments.
//!
//! A value fills its placeholder inside one argv element and is never split,
//! globbed or seen by a shell. A value that would begin an element may not
//! begin with `-`, so an argument cannot become an option of the command
//! (`--upload-pack=…`); an author who wants options from the caller writes
//! them into the template (`--format={format}`). `{{` and `}}` are literal
//! braces.

use serde_json::Value;

/// Most elements a template may have, and the longest one may render to.
pub const MAX_ARGS: usize = 64;
pub const MAX_ARG_BYTES: usize = 16 << 10;

/// One piece of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Param(String),
}

/// A parsed `args` list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    args: Vec<Vec<Piece>>,
}

/// A placeholder name: a letter or `_`, then letters, digits, `_` (≤ 64).
fn valid_param(name: &str) -> bool {
    let mut bytes = name.bytes();
    (1..=64).contains(&name.len())
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn element(arg: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = arg.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                if !closed || !valid_param(&name) {
                    return Err(format!(
                        "{arg:?}: {{{name}}} is not a placeholder (a name of letters, digits and _, closed by }}; write {{{{ for a brace)"
                    ));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Param(name));
            }
            '}' => return Err(format!("{arg:?}: a lone }} (write }}}} for a brace)")),
            '\0' => return Err(format!("{arg:?} contains a NUL byte")),
            c => text.push(c),
        }
    }
    if !text.is_empty() || pieces.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

impl Template {
    /// Parses a manifest's `args`, or says what is wrong with them.
    pub fn parse(args: &[String]) -> Result<Self, String> {
        if args.len() > MAX_ARGS {
            return Err(format!("{} arguments, more than {MAX_ARGS}", args.len()));
        }
        let args = args.iter().map(|a| element(a)).collect::<Result<_, _>>()?;
        Ok(Self { args })
    }

    /// The placeholders, each once, in order of first use.
    pub fn params(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        for p in self.args.iter().flatten() {
            if let Piece::Param(name) = p
                && !seen.contains(&name.as_str())
            {
                seen.push(name);
            }
        }
        seen
    }

    /// The JSON schema an agent sees when the manifest gives none: every
    /// placeholder a required string.
    pub fn schema(&self) -> String {
        let params = self.params();
        let properties: serde_json::Map<String, Value> = params
            .iter()
            .map(|p| ((*p).to_owned(), serde_json::json!({"type": "string"})))
            .collect();
        serde_json::json!({
            "type": "object",
            "properties": properties,
            "required": params,
        })
        .to_string()
    }

    /// The argv (after the program) for a call's `arguments_json`.
    pub fn render(&self, arguments_json: &str) -> Result<Vec<String>, String> {
        let arguments: Value = if arguments_json.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(arguments_json)
                .map_err(|e| format!("arguments are not JSON: {e}"))?
        };
        let Value::Object(arguments) = arguments else {
            return Err("arguments must be a JSON object".to_owned());
        };
        let mut argv = Vec::with_capacity(self.args.len());
        for pieces in &self.args {
            let mut arg = String::new();
            for (i, piece) in pieces.iter().enumerate() {
                match piece {
                    Piece::Text(t) => arg.push_str(t),
                    Piece::Param(name) => {
                        let value = value(name, arguments.get(name))?;
                        if i == 0 && value.starts_with('-') {
                            return Err(format!(
                                "argument {name} may not start with '-' (it would be read as an option): {value:?}"
                            ));
                        }
                        arg.push_str(&value);
                    }
                }
            }
            if arg.len() > MAX_ARG_BYTES {
                return Err(format!(
                    "an argument is {} bytes, more than {MAX_ARG_BYTES}",
                    arg.len()
                ));
            }
            argv.push(arg);
        }
        Ok(argv)
    }
}

/// A JSON value as one argument: strings as they are, numbers and booleans
/// as written; nothing else.
fn value(name: &str, v: Option<&Value>) -> Result<String, String> {
    let s = match v {
        None | Some(Value::Null) => return Err(format!("argument {name} is missing")),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(_) => {
            return Err(format!(
                "argument {name} must be a string, number or boolean"
            ));
        }
    };
    if s.contains('\0') {
        return Err(format!("argument {name} contains a NUL byte"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case: what goes in, and the result wanted (or a part of the error).
    type Case<'a, In> = (In, Result<&'a [&'a str], &'a str>);

    fn t(args: &[&str]) -> Result<Template, String> {
        Template::parse(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn templates_parse_or_say_why_not() {
        let table: &[Case<&[&str]>] = &[
            (&["status", "--short"], Ok(&[])),
            (
                &["-C", "{repo}", "log", "-n", "{count}"],
                Ok(&["repo", "count"]),
            ),
            (&["--format={fmt}", "{fmt}"], Ok(&["fmt"])),
            (&["{{literal}}"], Ok(&[])),
            (&[""], Ok(&[])),
            (&["{}"], Err("is not a placeholder")),
            (&["{a b}"], Err("is not a placeholder")),
            (&["{1x}"], Err("is not a placeholder")),
            (&["{open"], Err("is not a placeholder")),
            (&["close}"], Err("a lone }")),
            (&["a\0b"], Err("NUL")),
        ];
        for (args, want) in table {
            match (t(args), want) {
                (Ok(tpl), Ok(params)) => assert_eq!(tpl.params(), *params, "{args:?}"),
                (Err(e), Err(needle)) => assert!(e.contains(needle), "{args:?}: {e}"),
                (got, want) => panic!("{args:?}: got {got:?}, want {want:?}"),
            }
        }
        let many: Vec<String> = (0..=MAX_ARGS).map(|i| i.to_string()).collect();
        assert!(Template::parse(&many).is_err());
    }

    #[test]
    fn values_fill_one_element_each_and_never_become_options() -> Result<(), String> {
        let tpl = t(&["-C", "{repo}", "log", "--max-count={n}", "{{x}}", "{a}{b}"])?;
        let table: &[Case<&str>] = &[
            (
                r#"{"repo":"/srv/my repo; rm -rf /","n":3,"a":"x","b":"-y"}"#,
                Ok(&[
                    "-C",
                    "/srv/my repo; rm -rf /",
                    "log",
                    "--max-count=3",
                    "{x}",
                    "x-y",
                ]),
            ),
            (
                r#"{"repo":"$(id)","n":"-1","a":true,"b":""}"#,
                Ok(&["-C", "$(id)", "log", "--max-count=-1", "{x}", "true"]),
            ),
            (
                r#"{"repo":"--upload-pack=evil","n":1,"a":"","b":""}"#,
                Err("may not start with '-'"),
            ),
            (
                r#"{"repo":"/r","n":1,"a":"-a","b":""}"#,
                Err("may not start with '-'"),
            ),
            (
                r#"{"repo":"/r","n":1,"a":"x"}"#,
                Err("argument b is missing"),
            ),
            (
                r#"{"repo":null,"n":1,"a":"x","b":""}"#,
                Err("argument repo is missing"),
            ),
            (
                r#"{"repo":["/r"],"n":1,"a":"x","b":""}"#,
                Err("must be a string"),
            ),
            (r#"{"repo":"a\u0000b","n":1,"a":"x","b":""}"#, Err("NUL")),
            (r#"["/r"]"#, Err("must be a JSON object")),
            ("{", Err("not JSON")),
        ];
        for (json, want) in table {
            match (tpl.render(json), want) {
                (Ok(argv), Ok(expected)) => assert_eq!(argv, *expected, "{json}"),
                (Err(e), Err(needle)) => assert!(e.contains(needle), "{json}: {e}"),
                (got, want) => panic!("{json}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(t(&["status"])?.render("")?, ["status"]);
        let big = format!(r#"{{"a":"{}","b":""}}"#, "x".repeat(MAX_ARG_BYTES + 1));
        assert!(t(&["{a}{b}"])?.render(&big).is_err());
        Ok(())
    }

    #[test]
    fn the_default_schema_requires_every_placeholder_as_a_string() -> Result<(), String> {
        let schema: Value = serde_json::from_str(&t(&["{repo}", "{n}", "{repo}"])?.schema())
            .map_err(|e| e.to_string())?;
        assert_eq!(schema["required"], serde_json::json!(["repo", "n"]));
        assert_eq!(schema["properties"]["n"]["type"], "string");
        Ok(())
    }
}
