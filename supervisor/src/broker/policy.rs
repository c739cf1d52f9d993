//! Capability matching: whether a plugin's grant allows a particular host call.
//! Small and table-tested; every decision tarkd makes about a plugin's reach
//! starts here.

/// What an env pattern may be, for error messages.
pub const ENV_RULE: &str = "an exact variable name (ASCII letters, digits and _, not starting with a digit) or PREFIX_* (such a name, then _*, e.g. GEMINI_*); *, A*, _* and X*Y are refused";

/// Longest variable name a pattern or a request may carry.
const MAX_ENV_NAME: usize = 255;

/// Whether `name` is a variable name: ASCII letters, digits and `_`, not
/// starting with a digit, at most [`MAX_ENV_NAME`] bytes.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ENV_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Whether an env pattern is well-formed ([`ENV_RULE`]): an exact name, or
/// `PREFIX_*` where PREFIX is a name. A pattern reaches no further than one
/// application's own variables: `*` is the whole environment, and `A*`,
/// `H*` or `_*` sweep up others' (`AWS_CA_BUNDLE`, `HOME`).
pub fn valid_env_pattern(pattern: &str) -> bool {
    match pattern.strip_suffix("_*") {
        Some(prefix) => is_name(prefix) && !prefix.ends_with('_'),
        None => is_name(pattern),
    }
}

/// Whether `name` is a variable name a plugin may ask for.
pub fn valid_env_name(name: &str) -> bool {
    is_name(name)
}

/// Whether `name` is allowed by one env pattern. `GEMINI_*` matches names that
/// start with `GEMINI_` (and `GEMINI_` itself is not a variable anyone sets, but
/// matches too); matching is case-sensitive, as the environment is.
pub fn env_matches(pattern: &str, name: &str) -> bool {
    if !valid_env_pattern(pattern) || name.is_empty() {
        return false;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Whether any pattern in a grant allows `name`.
pub fn env_allowed(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| env_matches(p, name))
}

/// Whether every name `narrow` matches, `wide` matches too (approvals and policy
/// may only narrow what a plugin declared).
pub fn env_covers(wide: &str, narrow: &str) -> bool {
    if !valid_env_pattern(wide) || !valid_env_pattern(narrow) {
        return false;
    }
    match (wide.strip_suffix('*'), narrow.strip_suffix('*')) {
        (None, _) => wide == narrow,
        (Some(prefix), Some(n)) => n.starts_with(prefix),
        (Some(prefix), None) => narrow.starts_with(prefix),
    }
}

/// Whether an `fs_read` entry is well-formed: absolute, `~/...` (the configured
/// home) or `./...` (the plugin's own folder), without `..` components or NUL.
pub fn valid_fs_entry(entry: &str) -> bool {
    let rest = if entry == "~" || entry == "." {
        ""
    } else if let Some(r) = entry
        .strip_prefix("~/")
        .or_else(|| entry.strip_prefix("./"))
    {
        r
    } else if entry.starts_with('/') {
        entry
    } else {
        return false;
    };
    entry.len() <= 4096 && !entry.contains('\0') && !rest.split('/').any(|c| c == "..")
}

/// Whether a declared path entry covers another, lexically: the same path or one
/// below it (`~/a` covers `~/a/b`, not `~/ab`). Used for approvals; the broker
/// decides reads on canonical paths.
pub fn path_covers(wide: &str, narrow: &str) -> bool {
    let (w, n) = (wide.trim_end_matches('/'), narrow.trim_end_matches('/'));
    if w.is_empty() {
        // "/" covers everything absolute.
        return wide.starts_with('/') && narrow.starts_with('/');
    }
    n == w || n.strip_prefix(w).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_covers_table() {
        for (wide, narrow, want) in [
            ("A_*", "A_B", true),
            ("A_*", "A_B_*", true),
            ("A_*", "A_*", true),
            ("A_*", "A*", false),
            ("A_*", "B_*", false),
            ("A_B", "A_B", true),
            ("A_B", "A_*", false),
            ("A_B", "A_BC", false),
            ("A*", "AB", false), // A* is no pattern
            ("*", "A", false),
            ("A_*", "*", false),
        ] {
            assert_eq!(env_covers(wide, narrow), want, "{wide} covers {narrow}");
        }
    }

    #[test]
    fn fs_entry_table() {
        for (entry, want) in [
            ("/etc/hosts", true),
            ("~/.config/app/credentials.json", true),
            ("~", true),
            ("./data", true),
            ("/", true),
            ("", false),
            ("data", false),
            ("~user/x", false),
            ("../x", false),
            ("/a/../b", false),
            ("~/..", false),
            ("./a/..", false),
            ("/a/..b", true),
            ("/a\0b", false),
        ] {
            assert_eq!(valid_fs_entry(entry), want, "{entry:?}");
        }
    }

    #[test]
    fn path_covers_table() {
        for (wide, narrow, want) in [
            ("~/a", "~/a", true),
            ("~/a", "~/a/b", true),
            ("~/a/", "~/a/b", true),
            ("~/a", "~/ab", false),
            ("~/a/b", "~/a", false),
            ("/etc", "/etc/hosts", true),
            ("/etc", "/etcx", false),
            ("/", "/etc", true),
            ("/", "~/x", false),
            ("./data", "./data/x", true),
            ("~/a", "/home/u/a", false),
        ] {
            assert_eq!(path_covers(wide, narrow), want, "{wide} covers {narrow}");
        }
    }

    #[test]
    fn env_pattern_table() {
        let cases = [
            ("GEMINI_*", "GEMINI_API_KEY", true),
            ("GEMINI_*", "GEMINI_", true),
            ("GEMINI_*", "OPENAI_API_KEY", false),
            ("GEMINI_*", "GEMINI", false),
            ("GEMINI_*", "gemini_api_key", false),
            ("GEMINI_*", "XGEMINI_KEY", false),
            ("MY_API_KEY", "MY_API_KEY", true),
            ("MY_API_KEY", "MY_API_KEY2", false),
            ("MY_API_KEY", "MY_API", false),
            ("MY_API_KEY", "my_api_key", false),
            ("*", "PATH", false),
            ("", "", false),
            ("A*B", "AxB", false),
            ("A**", "A*", false),
            // Prefixes that sweep up other applications' variables.
            ("A*", "AWS_CA_BUNDLE", false),
            ("H*", "HOME", false),
            ("_*", "_", false),
            ("_*", "__X", false),
            ("A__*", "A__X", false),
            ("GEMINI*", "GEMINI_KEY", false),
            ("X_*", "X_Y", true),
            ("_A_*", "_A_B", true),
            ("PATH", "", false),
            ("1ABC", "1ABC", false),
            ("A-B", "A-B", false),
            ("NOTES_*", "NOTES_AUTHOR", true),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(env_matches(pattern, name), want, "{pattern:?} vs {name:?}");
        }
    }

    #[test]
    fn env_name_table() {
        let long = "A".repeat(MAX_ENV_NAME);
        let too_long = "A".repeat(MAX_ENV_NAME + 1);
        for (name, want) in [
            ("A", true),
            ("A_B1", true),
            ("_", true),
            ("A_*", false),
            ("*", false),
            ("", false),
            ("1A", false),
            ("A-B", false),
            ("A\nB", false),
            (long.as_str(), true),
            (too_long.as_str(), false),
        ] {
            assert_eq!(valid_env_name(name), want, "{name:?}");
        }
    }

    #[test]
    fn env_patterns_are_names_or_name_underscore_star() {
        for (pattern, want) in [
            ("GEMINI_*", true),
            ("MY_API_KEY", true),
            ("X_*", true),
            ("A_B_*", true),
            ("*", false),
            ("A*", false),
            ("H*", false),
            ("_*", false),
            ("__*", false),
            ("A__*", false),
            ("X*Y", false),
            ("A_**", false),
            ("*_A", false),
            ("1_*", false),
            ("", false),
        ] {
            assert_eq!(valid_env_pattern(pattern), want, "{pattern:?}");
        }
    }

    #[test]
    fn env_allowed_needs_one_match() {
        let grant = vec!["A".to_owned(), "B_*".to_owned()];
        assert!(env_allowed(&grant, "A"));
        assert!(env_allowed(&grant, "B_X"));
        assert!(!env_allowed(&grant, "C"));
        assert!(!env_allowed(&[], "A"));
    }
}
