//! The client-to-server half of an HTTP/2 connection, read frame by frame so
//! that a request's `:authority` which no HTTP parser accepts is replaced
//! before hyper's h2 sees it.
//!
//! grpcio (1.57 and later), grpc-java and grpc-swift send the socket path,
//! percent-encoded, as the `:authority` of a call over `unix:`; h2 rejects it
//! (`RST_STREAM PROTOCOL_ERROR`) and the call never reaches tarkd. The
//! authority means nothing on a Unix socket, so a value that is not a valid
//! authority is sent on as `localhost`, as grpc-go and tonic clients send it.
//!
//! A client sends one authority for the whole channel, so the first header
//! block decides: if its `:authority` is valid (tonic, grpc-go), everything
//! after it passes through undecoded, and the connection costs what a plain
//! socket does. Otherwise every block is decoded, to keep the HPACK state in
//! step with the client's, and re-encoded (the first after a dynamic table
//! size update to 0 and back, so the server's table starts again with the
//! encoder's). A client that sent a valid authority first and an invalid one
//! later gets h2's refusal of that call, as it would without this scanner.
//! Frames other than HEADERS and CONTINUATION pass through untouched and
//! uncopied (see [`super::UnixConn`]). What a client can make this buffer is
//! bounded: one header block, [`MAX_BLOCK`] bytes compressed and decoded.

use std::io;

use loona_hpack::{Decoder, Encoder};

/// The largest header block (compressed or decoded) a connection may send.
/// gRPC clients cap metadata at 8–16 KiB by default.
pub const MAX_BLOCK: usize = 1 << 20;

/// The HTTP/2 client connection preface, passed through as it is.
const PREFACE_LEN: usize = 24;
const FRAME_HEAD: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer accepts (SETTINGS_MAX_FRAME_SIZE's floor).
const MIN_MAX_FRAME: usize = 16_384;
/// HPACK's default (and h2's) dynamic table size.
const TABLE_SIZE: usize = 4096;

/// What an `:authority` becomes when it is not a valid authority.
pub const REPLACEMENT: &[u8] = b"localhost";

/// Whether h2 would refuse this `:authority` (and so the whole request).
pub fn needs_fix(authority: &[u8]) -> bool {
    http::uri::Authority::try_from(authority).is_err()
}

/// The header frames of one block, as received, while it is incomplete.
struct Block {
    stream: u32,
    flags: u8,
    /// The 5 priority bytes of the HEADERS frame, when it had them.
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    raw: Vec<u8>,
}

/// The scanner of one connection's client-to-server bytes.
pub struct Scanner {
    preface_left: usize,
    /// Payload bytes of the current non-header frame still to pass through.
    pass_left: usize,
    block: Option<Block>,
    decoder: Decoder<'static>,
    /// Set once a block was re-encoded: every later one is too.
    encoder: Option<Encoder<'static>>,
    /// Set when the first block needed no fix: the rest passes through.
    settled: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(TABLE_SIZE);
        Self {
            preface_left: PREFACE_LEN,
            pass_left: 0,
            block: None,
            decoder,
            encoder: None,
            settled: false,
        }
    }
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Scanner {
    /// How many of `bytes` (the next ones from the client) pass through as
    /// they are. The rest must go to [`Scanner::process`].
    pub fn passthrough(&mut self, bytes: &[u8]) -> usize {
        if self.settled {
            return bytes.len();
        }
        let mut i = 0;
        while i < bytes.len() {
            let left = if self.preface_left > 0 {
                &mut self.preface_left
            } else if self.pass_left > 0 {
                &mut self.pass_left
            } else {
                break;
            };
            let take = (*left).min(bytes.len() - i);
            *left -= take;
            i += take;
        }
        i
    }

    /// Consumes the complete frames at the front of `pending` (bytes that did
    /// not pass through), appending what the server should read to `out`.
    /// An incomplete frame stays in `pending`, except a non-header frame's
    /// payload, which passes on as it arrives.
    pub fn process(&mut self, pending: &mut Vec<u8>, out: &mut Vec<u8>) -> io::Result<()> {
        let mut at = 0;
        let result = loop {
            at += {
                let n = self.passthrough(&pending[at..]);
                out.extend_from_slice(&pending[at..at + n]);
                n
            };
            if at == pending.len() || self.preface_left > 0 || self.pass_left > 0 {
                break Ok(());
            }
            let rest = &pending[at..];
            if rest.len() < FRAME_HEAD {
                break Ok(());
            }
            let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
            let kind = rest[3];
            if kind != HEADERS && kind != CONTINUATION {
                if self.block.is_some() {
                    break Err(invalid("a frame interleaved in a header block"));
                }
                out.extend_from_slice(&rest[..FRAME_HEAD]);
                self.pass_left = len;
                at += FRAME_HEAD;
                continue;
            }
            if len > MAX_BLOCK {
                break Err(invalid("header frame larger than the header block limit"));
            }
            if rest.len() < FRAME_HEAD + len {
                break Ok(());
            }
            let frame = &rest[..FRAME_HEAD + len];
            at += frame.len();
            if let Err(e) = self.header_frame(frame, out) {
                break Err(e);
            }
        };
        pending.drain(..at);
        result
    }

    /// One complete HEADERS or CONTINUATION frame.
    fn header_frame(&mut self, frame: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEAD..];
        match (kind, self.block.as_mut()) {
            (HEADERS, None) => {
                let (fragment, priority) = headers_payload(flags, payload)?;
                self.block = Some(Block {
                    stream,
                    flags,
                    priority,
                    fragment: fragment.to_vec(),
                    raw: frame.to_vec(),
                });
            }
            (CONTINUATION, Some(block)) if block.stream == stream => {
                if block.raw.len() + frame.len() > MAX_BLOCK {
                    return Err(invalid("header block larger than the limit"));
                }
                block.fragment.extend_from_slice(payload);
                block.raw.extend_from_slice(frame);
            }
            _ => return Err(invalid("CONTINUATION out of place")),
        };
        if flags & END_HEADERS == 0 {
            return Ok(());
        }
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        let headers = self.decode(&block.fragment)?;
        let fix = headers
            .iter()
            .any(|(name, value)| name == b":authority" && needs_fix(value));
        if !fix && self.encoder.is_none() {
            // Only the first block can get here: the client's authority is
            // one h2 takes, and so are its later ones.
            out.extend_from_slice(&block.raw);
            self.settled = true;
            return Ok(());
        }
        let fresh = self.encoder.is_none();
        let encoder = self.encoder.get_or_insert_with(Encoder::new);
        let mut encoded = Vec::with_capacity(block.fragment.len() + 16);
        if fresh {
            // Size update to 0 (empties the server's table) and back to 4096.
            encoded.extend_from_slice(&[0x20, 0x3f, 0xe1, 0x1f]);
        }
        let fields = headers.iter().map(|(name, value)| {
            let value = if name == b":authority" && needs_fix(value) {
                REPLACEMENT
            } else {
                value.as_slice()
            };
            (name.as_slice(), value)
        });
        encoder.encode_into(fields, &mut encoded)?;
        write_block(&block, &encoded, out);
        Ok(())
    }

    /// Decodes a block, bounding what it decodes to.
    fn decode(&mut self, fragment: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut headers = Vec::new();
        let mut size = 0usize;
        self.decoder
            .decode_with_cb(fragment, |name, value| {
                size = size.saturating_add(name.len() + value.len() + 32);
                if size <= MAX_BLOCK {
                    headers.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| invalid(format!("HPACK: {e:?}")))?;
        if size > MAX_BLOCK {
            return Err(invalid("decoded header list larger than the limit"));
        }
        Ok(headers)
    }
}

/// A HEADERS payload's header block fragment and priority, padding removed.
fn headers_payload(flags: u8, payload: &[u8]) -> io::Result<(&[u8], Option<[u8; 5]>)> {
    let malformed = || invalid("malformed HEADERS frame");
    let (mut body, pad) = if flags & PADDED != 0 {
        let (&pad, body) = payload.split_first().ok_or_else(malformed)?;
        (body, usize::from(pad))
    } else {
        (payload, 0)
    };
    body = body
        .get(..body.len().checked_sub(pad).ok_or_else(malformed)?)
        .ok_or_else(malformed)?;
    let priority = if flags & PRIORITY != 0 {
        let (p, rest) = body.split_first_chunk::<5>().ok_or_else(malformed)?;
        body = rest;
        Some(*p)
    } else {
        None
    };
    Ok((body, priority))
}

/// Writes a re-encoded block as a HEADERS frame (the original's stream,
/// END_STREAM and priority; no padding) and as many CONTINUATIONs as needed.
fn write_block(block: &Block, encoded: &[u8], out: &mut Vec<u8>) {
    let mut prefix = Vec::new();
    let mut flags = block.flags & END_STREAM;
    if let Some(p) = block.priority {
        flags |= PRIORITY;
        prefix.extend_from_slice(&p);
    }
    let first = encoded.len().min(MIN_MAX_FRAME - prefix.len());
    let (head, mut rest) = encoded.split_at(first);
    let mut kind = HEADERS;
    let mut chunk = head;
    loop {
        let last = rest.is_empty();
        let frame_flags = flags | if last { END_HEADERS } else { 0 };
        let len = prefix.len() + chunk.len();
        out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[kind, frame_flags]);
        out.extend_from_slice(&block.stream.to_be_bytes());
        out.extend_from_slice(&prefix);
        out.extend_from_slice(chunk);
        if last {
            return;
        }
        prefix.clear();
        flags = 0;
        kind = CONTINUATION;
        let n = rest.len().min(MIN_MAX_FRAME);
        (chunk, rest) = rest.split_at(n);
    }
}

#[cfg(test)]
mod tests;
