//! Landlock's ABI levels as tarkd and its workers name them: both sides
//! report what a kernel at some level leaves out (tark-worker after applying
//! its ruleset, `tarkd --check-host` before any worker starts).

/// The ABI whose rights tarkd asks for (Linux 6.12).
pub const TARGET: u32 = 6;

/// What each ABI after the first adds, as an operator would look it up.
pub const ADDED: [(u32, &str); 5] = [
    (
        2,
        "refer: linking or renaming across folders (ABI 2, Linux 5.19)",
    ),
    (3, "truncate (ABI 3, Linux 6.2)"),
    (4, "tcp bind and connect (ABI 4, Linux 6.7)"),
    (5, "ioctl on devices (ABI 5, Linux 6.10)"),
    (
        6,
        "abstract unix sockets and signals scoped (ABI 6, Linux 6.12)",
    ),
];

/// The rights tarkd asks for that a kernel at ABI `got` does not enforce
/// (0: no landlock at all, so everything).
pub fn missing(got: u32) -> Vec<&'static str> {
    ADDED
        .iter()
        .filter(|(abi, _)| *abi > got)
        .map(|(_, right)| *right)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_abi_misses_exactly_the_rights_added_after_it() {
        for got in 0..=7u32 {
            let expected = (super::TARGET.saturating_sub(got.max(1))) as usize;
            assert_eq!(super::missing(got).len(), expected, "ABI {got}");
        }
        assert!(super::missing(2)[0].starts_with("truncate"));
        assert!(super::missing(5)[0].starts_with("abstract unix sockets"));
    }
}
