//! What a jailed command may touch besides the paths its plugin declared: the
//! system's programs and libraries (to run at all) and a few files the C
//! library and common tools read at start. Read and execute only; the one
//! writable file is `/dev/null`.
//!
//! Missing entries are skipped (a distribution without `/lib64`), so the table
//! can name what any of them might need.

/// Folders whose programs and libraries a command may read and execute.
pub const SYSTEM: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];

/// Files (and the one folder) read, never executed: the dynamic loader's cache,
/// users and groups by name, the time zone, alternatives' links.
pub const CONFIG: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/alternatives",
    "/dev/zero",
    "/dev/urandom",
];

/// Read and written: where a command's unwanted output goes.
pub const SINKS: &[&str] = &["/dev/null"];

/// The only places a bare command name is looked up, in this order.
pub const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Whether a declared read path is acceptable to the jail: absolute, no `.`
/// or `..` component, no NUL. tarkd sends only such paths; the jail checks
/// again rather than trust its input.
pub fn acceptable(path: &str) -> bool {
    let p = std::path::Path::new(path);
    p.is_absolute()
        && !path.contains('\0')
        && p.components().all(|c| {
            matches!(
                c,
                std::path::Component::RootDir | std::path::Component::Normal(_)
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_absolute_paths_are_acceptable() {
        let table = [
            ("/srv/repo", true),
            ("/", true),
            ("/srv/repo/", true),
            ("srv/repo", false),
            ("./repo", false),
            ("/srv/../etc", false),
            ("/srv/./repo", true), // Path drops inner `.` components
            ("", false),
            ("/srv/\0x", false),
        ];
        for (path, ok) in table {
            assert_eq!(acceptable(path), ok, "{path:?}");
        }
    }

    #[test]
    fn nothing_writable_but_the_null_device_and_no_secrets_in_etc() {
        assert_eq!(SINKS, ["/dev/null"]);
        for p in SYSTEM.iter().chain(CONFIG) {
            assert!(acceptable(p), "{p}");
            assert!(!p.starts_with("/etc/") || !p.contains("shadow"), "{p}");
        }
        assert!(!CONFIG.contains(&"/etc"), "all of /etc is not granted");
        assert!(!SYSTEM.contains(&"/"), "the root is not granted");
    }
}
