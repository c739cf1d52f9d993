//! The agent API socket's frame scanner (tarkd's `transport::headers`) on its
//! own: CPU per call for a typical unary call's client bytes (HEADERS with a
//! dynamic-table-compressed block and a Huffman-coded `grpc-timeout` that
//! changes each call, as clients send it; one DATA frame), read in 16 KiB
//! pieces as hyper reads them; with a valid `:authority` (the first block
//! decoded, the rest passed through) and with grpcio's socket-path one (every
//! block decoded and re-encoded).

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

/// `grpc-timeout: <ms>m` as a literal field without indexing, its value
/// Huffman-coded (RFC 7541 appendix B codes of the digits and `m`).
fn timeout_field(ms: u32) -> Vec<u8> {
    const CODES: [(u32, u32); 10] = [
        (0x0, 5),
        (0x1, 5),
        (0x2, 5),
        (0x19, 6),
        (0x1a, 6),
        (0x1b, 6),
        (0x1c, 6),
        (0x1d, 6),
        (0x1e, 6),
        (0x1f, 6),
    ];
    let (mut bits, mut n) = (0u64, 0u32);
    for d in ms.to_string().bytes() {
        let (code, len) = CODES[usize::from(d - b'0')];
        bits = bits << len | u64::from(code);
        n += len;
    }
    bits = bits << 6 | 0x29; // 'm'
    n += 6;
    let pad = (8 - n % 8) % 8; // EOS's leading ones
    bits = bits << pad | ((1 << pad) - 1);
    let value: Vec<u8> = (0..(n + pad) / 8)
        .rev()
        .map(|i| (bits >> (8 * i)) as u8)
        .collect();
    let mut field = vec![0x00, 12];
    field.extend_from_slice(b"grpc-timeout");
    field.push(0x80 | value.len() as u8);
    field.extend(value);
    field
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
        let mut block = encoder.encode(headers);
        block.extend(timeout_field(4_000 + i % 1_000));
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_timeout_field_decodes_as_written() -> anyhow::Result<()> {
        for ms in [0, 9, 4_000, 4_999, 1_234_567] {
            let fields = loona_hpack::Decoder::new()
                .decode(&super::timeout_field(ms))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let want = (b"grpc-timeout".to_vec(), format!("{ms}m").into_bytes());
            assert_eq!(fields, [want], "{ms}");
        }
        Ok(())
    }
}
