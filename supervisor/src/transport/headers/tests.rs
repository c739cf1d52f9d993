//! The scanner through a real socket pair, the client's bytes written in
//! chunks of every size, and the server side decoded as h2 would.

use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::transport::UnixConn;

const PATH_AUTHORITY: &[u8] = b"%2Ftmp%2Ftarkd%2Ftarkd.sock";

#[test]
fn which_authorities_are_fixed() {
    let table: &[(&[u8], bool)] = &[
        (b"localhost", false),
        (b"localhost:50051", false),
        (b"tarkd.example", false),
        (b"[::1]:443", false),
        (b"127.0.0.1", false),
        (b"user@host", false),
        (b"", true),
        (b"%2Ftmp%2Fx.sock", true),
        (b"/var/run/tarkd.sock", true),
        (b"tmp%2Fx.sock", true),
        (b"a b", true),
        (b"host:1:2", true),
        (b"\xff", true),
    ];
    for (authority, fixed) in table {
        assert_eq!(
            needs_fix(authority),
            *fixed,
            "{:?}",
            String::from_utf8_lossy(authority)
        );
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn preface() -> Vec<u8> {
    let mut p = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS with one setting, then a DATA frame on stream 0's neighbour.
    p.extend(frame(0x4, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]));
    p
}

fn request(authority: &[u8], path: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (b":method".to_vec(), b"POST".to_vec()),
        (b":scheme".to_vec(), b"http".to_vec()),
        (b":path".to_vec(), path.as_bytes().to_vec()),
        (b":authority".to_vec(), authority.to_vec()),
        (b"content-type".to_vec(), b"application/grpc".to_vec()),
        (b"te".to_vec(), b"trailers".to_vec()),
    ]
}

fn encode(encoder: &mut Encoder<'static>, headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    encoder.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())))
}

/// A decoded header block: names and values.
type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

/// A frame as the server reads it.
#[derive(Debug, PartialEq)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn frames(mut bytes: &[u8]) -> Vec<Frame> {
    assert!(bytes.starts_with(b"PRI * HTTP/2.0"));
    bytes = &bytes[PREFACE_LEN..];
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        out.push(Frame {
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]),
            payload: bytes[FRAME_HEAD..FRAME_HEAD + len].to_vec(),
        });
        bytes = &bytes[FRAME_HEAD + len..];
    }
    out
}

/// Decodes the server's view: each header block (HEADERS + CONTINUATIONs),
/// with one decoder for the connection, as h2 does.
fn blocks(frames: &[Frame]) -> anyhow::Result<Vec<HeaderList>> {
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    let mut fragment = Vec::new();
    for f in frames {
        match f.kind {
            HEADERS => {
                let (body, _) = headers_payload(f.flags, &f.payload)?;
                fragment = body.to_vec();
            }
            CONTINUATION => fragment.extend_from_slice(&f.payload),
            _ => continue,
        }
        assert!(f.payload.len() <= MAX_FRAME, "frame of {}", f.payload.len());
        if f.flags & END_HEADERS != 0 {
            out.push(
                decoder
                    .decode(&fragment)
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?,
            );
        }
    }
    Ok(out)
}

/// Writes `input` into one end of a socket pair in `chunk`-byte writes and
/// reads everything from the other through a [`UnixConn`].
fn through(input: &[u8], chunk: usize) -> std::io::Result<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (mut client, server) = tokio::net::UnixStream::pair()?;
        let input = input.to_vec();
        let writer = tokio::spawn(async move {
            for piece in input.chunks(chunk) {
                if client.write_all(piece).await.is_err() {
                    return;
                }
                tokio::task::yield_now().await;
            }
        });
        let mut conn = UnixConn::from(server);
        let mut out = Vec::new();
        let result = conn.read_to_end(&mut out).await.map(|_| out);
        // Closing our end lets a writer blocked on a full socket finish.
        drop(conn);
        writer.await?;
        result
    })
}

const CHUNKS: [usize; 6] = [1, 2, 7, 9, 100, 1 << 16];

#[test]
fn valid_authorities_pass_through_byte_for_byte() -> anyhow::Result<()> {
    let mut encoder = Encoder::new();
    let mut input = preface();
    for (stream, path) in [(1, "/a.B/C"), (3, "/a.B/D"), (5, "/a.B/C")] {
        let block = encode(&mut encoder, &request(b"localhost", path));
        input.extend(frame(HEADERS, END_HEADERS, stream, &block));
        input.extend(frame(0x0, END_STREAM, stream, &[0, 0, 0, 0, 3, 1, 2, 3]));
    }
    for chunk in CHUNKS {
        assert_eq!(through(&input, chunk)?, input, "chunk {chunk}");
    }
    Ok(())
}

#[test]
fn after_a_valid_first_block_nothing_is_decoded() -> anyhow::Result<()> {
    // The client's later blocks pass as they are, even one that no longer
    // decodes or names the socket path: h2 judges them, as without tarkd.
    let mut encoder = Encoder::new();
    let mut input = preface();
    let first = encode(&mut encoder, &request(b"localhost", "/a.B/C"));
    input.extend(frame(HEADERS, END_HEADERS, 1, &first));
    let later = encode(&mut encoder, &request(PATH_AUTHORITY, "/a.B/C"));
    input.extend(frame(HEADERS, END_HEADERS, 3, &later));
    input.extend(frame(HEADERS, END_HEADERS, 5, &[0xff, 0xff, 0xff]));
    for chunk in CHUNKS {
        assert_eq!(through(&input, chunk)?, input, "chunk {chunk}");
    }
    Ok(())
}

#[test]
fn a_path_authority_becomes_localhost_and_later_blocks_stay_in_step() -> anyhow::Result<()> {
    let mut encoder = Encoder::new();
    let mut input = preface();
    let mut sent = Vec::new();
    // The socket path (its literal indexed by the client, then referenced),
    // then a valid authority (re-encoded too: the server's table is the
    // encoder's now), then the path again, referenced from the table.
    let calls: [(&[u8], &str); 4] = [
        (PATH_AUTHORITY, "/x.Y/First"),
        (b"localhost", "/x.Y/Second"),
        (PATH_AUTHORITY, "/x.Y/First"),
        (b"localhost", "/x.Y/Second"),
    ];
    for (i, (authority, path)) in calls.iter().enumerate() {
        let headers = request(authority, path);
        let block = encode(&mut encoder, &headers);
        input.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            2 * i as u32 + 1,
            &block,
        ));
        sent.push(headers);
    }
    for chunk in CHUNKS {
        let seen = blocks(&frames(&through(&input, chunk)?))?;
        assert_eq!(seen.len(), sent.len());
        for (seen, sent) in seen.iter().zip(&sent) {
            let expected: Vec<_> = sent
                .iter()
                .map(|(n, v)| {
                    let v = if v == PATH_AUTHORITY {
                        hpack::same_length_authority(v.len())
                    } else {
                        v.clone()
                    };
                    (n.clone(), v)
                })
                .collect();
            assert_eq!(seen, &expected, "chunk {chunk}");
        }
    }
    Ok(())
}

#[test]
fn padding_priority_and_end_stream_are_kept_or_dropped_as_h2_expects() -> anyhow::Result<()> {
    let mut encoder = Encoder::new();
    let block = encode(&mut encoder, &request(b"/run/tarkd.sock", "/p.Q/R"));
    let mut payload = vec![3u8];
    payload.extend_from_slice(&[0x80, 0, 0, 0, 42]);
    payload.extend_from_slice(&block);
    payload.extend_from_slice(&[0, 0, 0]);
    let mut input = preface();
    input.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM | PADDED | PRIORITY,
        1,
        &payload,
    ));
    let out = frames(&through(&input, 5)?);
    let headers = out
        .iter()
        .find(|f| f.kind == HEADERS)
        .ok_or_else(|| anyhow::anyhow!("no HEADERS"))?;
    assert_eq!(headers.flags, END_HEADERS | END_STREAM | PRIORITY);
    assert_eq!(&headers.payload[..5], &[0x80, 0, 0, 0, 42]);
    let seen = blocks(&out)?;
    let replaced = hpack::same_length_authority(b"/run/tarkd.sock".len());
    assert_eq!(seen[0][3], (b":authority".to_vec(), replaced));
    Ok(())
}

#[test]
fn a_block_in_continuations_is_rewritten_in_frames_of_legal_size() -> anyhow::Result<()> {
    let mut encoder = Encoder::new();
    let mut headers = request(PATH_AUTHORITY, "/big.Call/It");
    for i in 0..14 {
        headers.push((format!("x-meta-{i}").into_bytes(), vec![b'v'; 1000]));
    }
    let block = encode(&mut encoder, &headers);
    assert!(block.len() > 14_000 && block.len() <= MAX_BLOCK);
    let (first, rest) = block.split_at(10_000);
    let mut input = preface();
    input.extend(frame(HEADERS, 0, 1, first));
    input.extend(frame(CONTINUATION, END_HEADERS, 1, rest));
    let out = frames(&through(&input, 4096)?);
    assert!(out.iter().all(|f| f.payload.len() <= MAX_FRAME));
    assert_eq!(out.iter().filter(|f| f.kind == HEADERS).count(), 1);
    assert_eq!(blocks(&out)?[0].len(), headers.len());
    // Written again from scratch, a block past one frame is split.
    let long = Block {
        stream: 1,
        flags: END_HEADERS,
        priority: None,
        fragment: Vec::new(),
        raw: Vec::new(),
    };
    let mut written = Vec::new();
    write_block(&long, &vec![0x82; MAX_FRAME + 10], &mut written);
    let kinds: Vec<u8> = frames(&[&input[..PREFACE_LEN], &written[..]].concat())
        .iter()
        .map(|f| f.kind)
        .collect();
    assert_eq!(kinds, [HEADERS, CONTINUATION]);
    Ok(())
}

#[test]
fn what_a_client_can_make_it_hold_is_bounded() {
    let too_long = frame(HEADERS, END_HEADERS, 1, &vec![0u8; MAX_FRAME + 1]);
    // A 4 KiB entry referenced over and over: decodes to far more than it is.
    let mut bomb = vec![0x40, 1, b'x'];
    bomb.extend(loona_hpack::encoder::encode_integer(4000, 7));
    bomb.extend_from_slice(&[b'y'; 4000]);
    bomb.extend(std::iter::repeat_n(0x80 | 62, 12_000));
    // The HPACK CPU bomb: literal :authority, Huffman-coded empty value.
    let empties: Vec<u8> = [0x01, 0x80].repeat(MAX_FRAME / 2);
    // A block over the limit in CONTINUATIONs of legal size.
    let mut long_block = frame(HEADERS, 0, 1, &vec![0x82; MAX_FRAME]);
    long_block.extend(frame(CONTINUATION, END_HEADERS, 1, &[0x82]));
    let misplaced = frame(CONTINUATION, END_HEADERS, 1, &[0x82]);
    let mut interleaved = frame(HEADERS, 0, 1, &[0x82]);
    interleaved.extend(frame(0x0, 0, 1, &[]));
    let garbage = frame(
        HEADERS,
        END_HEADERS,
        1,
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    );
    let table: [(&str, Vec<u8>); 7] = [
        ("header frame over the frame size", too_long),
        ("too many fields", frame(HEADERS, END_HEADERS, 1, &bomb)),
        (
            "empty Huffman strings",
            frame(HEADERS, END_HEADERS, 1, &empties),
        ),
        ("block over the limit", long_block),
        ("CONTINUATION with no HEADERS", misplaced),
        ("DATA inside a header block", interleaved),
        ("HPACK that does not decode", garbage),
    ];
    for (what, bytes) in table {
        let mut input = preface();
        input.extend(bytes);
        let Err(err) = through(&input, 1 << 16) else {
            panic!("{what}: accepted");
        };
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{what}: {err}");
    }
}

#[test]
fn a_frame_declaring_a_megabyte_is_refused_before_its_payload() {
    // The slow-headers attack: the frame head alone, the payload never sent.
    let mut input = preface();
    input.extend_from_slice(&[0x0f, 0xff, 0xf0, HEADERS, 0, 0, 0, 0, 1]);
    input.extend_from_slice(&[0x82; 100]);
    let mut scanner = Scanner::default();
    let (mut pending, mut out) = (input[PREFACE_LEN..].to_vec(), Vec::new());
    scanner.passthrough(&input[..PREFACE_LEN]);
    let err = scanner.process(&mut pending, &mut out).err();
    assert!(
        err.is_some_and(|e| e.to_string().contains("over the frame size of 16384")),
        "refused on its head"
    );
}
