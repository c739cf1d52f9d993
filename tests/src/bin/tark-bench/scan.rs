//! The agent API socket's frame scanner (tarkd's `transport::headers`) on its
//! own: CPU per call for a typical unary call's client bytes (HEADERS with a
//! dynamic-table-compressed block, one DATA frame), read in 16 KiB pieces as
//! hyper reads them; with a valid `:authority` (decoded, forwarded as is) and
//! with grpcio's socket-path one (decoded and re-encoded).

use std::time::Instant;

use loona_hpack::Encoder;
use tarkd::transport::headers::Scanner;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// `calls` unary calls as a client sends them on one connection.
fn stream(calls: u32, authority: &[u8]) -> Vec<u8> {
    let mut encoder = Encoder::new();
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(frame(0x4, 0, 0, &[]));
    let message = [
        0u8, 0, 0, 0, 20, 10, 7, b'b', b'a', b'r', b'e', b'-', b'o', b'k', 18, 2, b'{', b'}', 0, 0,
        0, 0, 0, 0, 0,
    ];
    for i in 0..calls {
        let headers: [(&[u8], &[u8]); 8] = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/tark.plugin.v1.Tools/InvokeTool"),
            (b":authority", authority),
            (b"te", b"trailers"),
            (b"content-type", b"application/grpc"),
            (
                b"user-agent",
                b"grpc-python/1.85.3 grpc-c/52.0.0 (linux; chttp2)",
            ),
            (b"grpc-accept-encoding", b"identity, deflate, gzip"),
        ];
        let block = encoder.encode(headers);
        bytes.extend(frame(0x1, 0x4, 2 * i + 1, &block));
        bytes.extend(frame(0x0, 0x1, 2 * i + 1, &message));
    }
    bytes
}

/// Nanoseconds of scanning per call.
fn scan(bytes: &[u8], calls: u32) -> anyhow::Result<f64> {
    let mut scanner = Scanner::default();
    let (mut pending, mut out) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for piece in bytes.chunks(16 << 10) {
        let kept = if pending.is_empty() {
            scanner.passthrough(piece)
        } else {
            0
        };
        pending.extend_from_slice(&piece[kept..]);
        scanner.process(&mut pending, &mut out)?;
        out.clear();
    }
    Ok(started.elapsed().as_nanos() as f64 / f64::from(calls))
}

/// (valid authority, socket-path authority): ns per call, best of 5 runs.
pub fn run(calls: u32) -> anyhow::Result<(f64, f64)> {
    let valid = stream(calls, b"localhost");
    let path = stream(calls, b"%2Frun%2Ftarkd%2Ftarkd.sock");
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        best.0 = best.0.min(scan(&valid, calls)?);
        best.1 = best.1.min(scan(&path, calls)?);
    }
    Ok(best)
}
