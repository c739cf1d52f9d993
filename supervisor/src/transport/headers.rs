//! The client-to-server half of an HTTP/2 connection, read frame by frame so
//! that a request's `:authority` which no HTTP parser accepts is replaced
//! before hyper's h2 sees it.
//!
//! grpcio (1.57 and later), grpc-java and grpc-swift send the socket path,
//! percent-encoded, as the `:authority` of a call over `unix:`; h2 rejects it
//! (`RST_STREAM PROTOCOL_ERROR`) and the call never reaches tarkd. The
//! authority means nothing on a Unix socket, so a value that is not a valid
//! authority is replaced by a valid one of the same length ([`hpack`]: the
//! server's HPACK table then stays the client's, and nothing else in the
//! block changes).
//!
//! A client sends one authority for the whole channel, so the first header
//! block decides: if its `:authority` is valid (tonic, grpc-go), everything
//! after it passes through unread, and the connection costs what a plain
//! socket does. Otherwise every later block is scanned too (the client may
//! send the literal again once its table evicted it). A client that sent a
//! valid authority first and an invalid one later gets h2's refusal of that
//! call, as it would without this scanner. Frames other than HEADERS and
//! CONTINUATION pass through untouched and uncopied (see [`super::UnixConn`]).
//!
//! The scanner runs before anyone knows what the request is, so what a client
//! can make it do is bounded whatever it sends: header frames up to h2's
//! frame size ([`MAX_FRAME`]), a block up to [`MAX_BLOCK`] bytes and
//! [`hpack::MAX_FIELDS`] fields, work linear in the block's bytes. Anything
//! past those ends the connection.

use std::io;

use super::hpack;

/// The largest header block (compressed) a client may send: h2's header list
/// limit, which a block never exceeds (a field costs at least 32 bytes of
/// list and at most a few of block besides its strings).
pub const MAX_BLOCK: usize = 16 << 10;

/// The largest frame payload: the SETTINGS_MAX_FRAME_SIZE h2 advertises (its
/// default, which every peer accepts).
pub const MAX_FRAME: usize = 16_384;

/// The HTTP/2 client connection preface, passed through as it is.
const PREFACE_LEN: usize = 24;
const FRAME_HEAD: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

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

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No request seen yet: the first block decides.
    First,
    /// The first authority was valid: everything passes unread.
    Passing,
    /// The first authority needed the fix: every block is scanned.
    Rewriting,
}

/// The scanner of one connection's client-to-server bytes.
pub struct Scanner {
    preface_left: usize,
    /// Payload bytes of the current non-header frame still to pass through.
    pass_left: usize,
    block: Option<Block>,
    mode: Mode,
    /// The client's HPACK table, as far as the rewrite needs it.
    table: hpack::Table,
}

impl Default for Scanner {
    fn default() -> Self {
        Self {
            preface_left: PREFACE_LEN,
            pass_left: 0,
            block: None,
            mode: Mode::First,
            table: hpack::Table::default(),
        }
    }
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl Scanner {
    /// Whether the connection's first request (its whole header block) has
    /// been read.
    pub fn first_request_seen(&self) -> bool {
        self.mode != Mode::First
    }

    /// How many of `bytes` (the next ones from the client) pass through as
    /// they are. The rest must go to [`Scanner::process`].
    pub fn passthrough(&mut self, bytes: &[u8]) -> usize {
        if self.mode == Mode::Passing {
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
    /// An incomplete frame stays in `pending` (at most one header frame,
    /// [`MAX_FRAME`] bytes), except a non-header frame's payload, which
    /// passes on as it arrives.
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
            if len > MAX_FRAME {
                break Err(invalid(format!(
                    "a header frame of {len} bytes, over the frame size of {MAX_FRAME}"
                )));
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
                if block.fragment.len() + payload.len() > MAX_BLOCK {
                    return Err(invalid(format!("a header block over {MAX_BLOCK} bytes")));
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
        let mut rewritten = Vec::with_capacity(block.fragment.len() + 16);
        let scanned = hpack::rewrite(&block.fragment, &mut self.table, needs_fix, &mut rewritten)
            .map_err(|e| invalid(e.to_string()))?;
        self.mode = match (self.mode, scanned.fixed) {
            (Mode::First, false) => Mode::Passing,
            (Mode::First, true) | (Mode::Rewriting, _) => Mode::Rewriting,
            (Mode::Passing, _) => Mode::Passing,
        };
        if scanned.fixed {
            write_block(&block, &rewritten, out);
        } else {
            out.extend_from_slice(&block.raw);
        }
        Ok(())
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
    let first = encoded.len().min(MAX_FRAME - prefix.len());
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
        let n = rest.len().min(MAX_FRAME);
        (chunk, rest) = rest.split_at(n);
    }
}

#[cfg(test)]
mod tests;
