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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn env_allowed_needs_one_match() {
        let grant = vec!["A".to_owned(), "B_*".to_owned()];
        assert!(env_allowed(&grant, "A"));
        assert!(env_allowed(&grant, "B_X"));
        assert!(!env_allowed(&grant, "C"));
        assert!(!env_allowed(&[], "A"));
    }
}
