//! Capability matching: whether a plugin's grant allows a particular host call.
//! Small and table-tested; every decision tarkd makes about a plugin's reach
//! starts here.

/// Whether an env pattern is well-formed: an exact name or `PREFIX_*`, names made of
/// ASCII letters, digits and `_`. A bare `*` (the whole environment) is refused.
pub fn valid_env_pattern(pattern: &str) -> bool {
    let name = pattern.strip_suffix('*').unwrap_or(pattern);
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// Whether `name` is a variable name a plugin may ask for (a pattern without
/// the `*`).
pub fn valid_env_name(name: &str) -> bool {
    !name.ends_with('*') && valid_env_pattern(name)
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
            ("A*", "AB", true),
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
        for (name, want) in [
            ("A", true),
            ("A_B1", true),
            ("A_*", false),
            ("*", false),
            ("", false),
            ("1A", false),
            ("A-B", false),
        ] {
            assert_eq!(valid_env_name(name), want, "{name:?}");
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
