//! What the agent API socket reads before any gate: HPACK blocks and the
//! client's frames, from anyone who can connect.
//!
//! - `hpack::rewrite` never panics, and what it writes is a fixed point: read
//!   again (with a table in the same state), nothing is left to fix and not
//!   a byte changes.
//! - The frame scanner, fed the same bytes after a client preface in chunks
//!   of the size the first byte gives, never panics and never holds more
//!   than one header frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tarkd::transport::headers::{MAX_FRAME, Scanner, needs_fix};
use tarkd::transport::hpack::{self, Table};

fuzz_target!(|data: &[u8]| {
    let (first, rest) = data.split_first().map_or((0, data), |(f, r)| (*f, r));
    let (mut client, mut again) = (Table::default(), Table::default());
    let mut out = Vec::new();
    if let Ok(scanned) = hpack::rewrite(rest, &mut client, needs_fix, &mut out) {
        let mut twice = Vec::new();
        let second = hpack::rewrite(&out, &mut again, needs_fix, &mut twice);
        assert!(second.is_ok_and(|s| !s.fixed), "a rewritten block needs fixing again");
        assert_eq!(twice, out, "a rewritten block changed when read again");
        assert!(scanned.fixed || out == rest, "an unfixed block was changed");
    }

    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(rest);
    let chunk = usize::from(first).max(1);
    let mut scanner = Scanner::default();
    let (mut pending, mut sent) = (Vec::new(), Vec::new());
    for piece in bytes.chunks(chunk) {
        let kept = if pending.is_empty() {
            scanner.passthrough(piece)
        } else {
            0
        };
        pending.extend_from_slice(&piece[kept..]);
        if scanner.process(&mut pending, &mut sent).is_err() {
            return;
        }
        assert!(pending.len() <= MAX_FRAME + 9 + chunk, "held {} bytes", pending.len());
        sent.clear();
    }
});
