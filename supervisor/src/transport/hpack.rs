//! The part of HPACK (RFC 7541) the frame scanner needs: reading a header
//! block's representations one by one, and writing the block again with one
//! change, a `:authority` literal h2 would refuse replaced by a valid
//! authority of the same length.
//!
//! Same length is what keeps it cheap and exact. HPACK's dynamic table is
//! sized in decoded bytes (RFC 7541 §4.1), so a replacement of equal length
//! leaves the server's table holding exactly the entries, sizes and
//! evictions of the client's: every other representation is copied as it
//! came, Huffman-coded or not, and later blocks that refer to the table need
//! nothing but the same scan. Nothing is re-encoded, no header list is built,
//! and a string is decoded only when its length or its bytes matter (a
//! `:authority` candidate, or a literal the client adds to the table). The
//! [`Table`] here is a model of sizes and of which entries are `:authority`,
//! not of their contents.
//!
//! Work and memory are bounded by what the caller allows a block to be
//! ([`MAX_FIELDS`] representations, the block's bytes); any malformed input
//! is an error, as it is to h2.

use std::collections::VecDeque;

use super::huffman;

/// Representations one block may hold. gRPC requests carry about ten
/// headers; h2's default header list limit (16 KiB) holds at most ~500.
pub const MAX_FIELDS: usize = 128;

/// The dynamic table size h2 advertises, which the client may not exceed.
pub const TABLE_SIZE: usize = 4096;

/// The largest integer accepted (a length or an index; a block is smaller).
const MAX_INT: usize = 1 << 24;

/// The names of HPACK's static table (RFC 7541 Appendix A), index 1 first.
const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// Why a block could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("HPACK: the block ends inside a representation")]
    Truncated,
    #[error("HPACK: an integer over the limit")]
    Integer,
    #[error("HPACK: index {0} is in neither table")]
    Index(usize),
    #[error("HPACK: a table size update to {0}, over the {TABLE_SIZE} allowed")]
    TableSize(usize),
    #[error("HPACK: a table size update after a header field")]
    LateSizeUpdate,
    #[error("HPACK: more than {MAX_FIELDS} header fields in one block")]
    TooManyFields,
    #[error("HPACK: {0}")]
    Huffman(#[from] huffman::HuffmanError),
}

/// One dynamic table entry, as far as the scanner cares.
#[derive(Debug, Clone, Copy)]
struct Entry {
    authority: bool,
    name_len: usize,
    /// name + value + 32 (RFC 7541 §4.1).
    size: usize,
}

/// A model of one side's dynamic table: which entries are `:authority`, and
/// their sizes, so indices resolve and evictions happen as in the real one.
#[derive(Debug)]
pub struct Table {
    entries: VecDeque<Entry>,
    size: usize,
    max: usize,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max: TABLE_SIZE,
        }
    }
}

impl Table {
    fn insert(&mut self, e: Entry) {
        if e.size > self.max {
            self.entries.clear();
            self.size = 0;
            return;
        }
        while self.size + e.size > self.max {
            self.evict();
        }
        self.size += e.size;
        self.entries.push_front(e);
    }

    fn resize(&mut self, max: usize) {
        self.max = max;
        while self.size > self.max {
            self.evict();
        }
    }

    fn evict(&mut self) {
        if let Some(old) = self.entries.pop_back() {
            self.size -= old.size;
        }
    }

    /// (is `:authority`, name length) of an index of either table.
    fn name(&self, index: usize) -> Result<(bool, usize), HpackError> {
        match index {
            1..=61 => Ok((index == 1, STATIC_NAMES[index - 1].len())),
            _ => self
                .entries
                .get(index.wrapping_sub(62))
                .map(|e| (e.authority, e.name_len))
                .ok_or(HpackError::Index(index)),
        }
    }
}

/// An integer with an `n`-bit prefix at the start of `buf` (RFC 7541 §5.1):
/// its value and how many bytes it took.
fn integer(buf: &[u8], n: u8) -> Result<(usize, usize), HpackError> {
    let mask = (1usize << n) - 1;
    let first = usize::from(*buf.first().ok_or(HpackError::Truncated)?) & mask;
    if first < mask {
        return Ok((first, 1));
    }
    let (mut value, mut shift) = (mask, 0u32);
    for (i, &b) in buf.iter().enumerate().skip(1) {
        value += usize::from(b & 0x7f) << shift;
        if value > MAX_INT {
            return Err(HpackError::Integer);
        }
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::Integer);
        }
    }
    Err(HpackError::Truncated)
}

/// A string literal at the start of `buf` (RFC 7541 §5.2): whether it is
/// Huffman-coded, its coded bytes, and how many bytes it took in all.
fn string(buf: &[u8]) -> Result<(bool, &[u8], usize), HpackError> {
    let huffman = buf.first().ok_or(HpackError::Truncated)? & 0x80 != 0;
    let (len, n) = integer(buf, 7)?;
    let bytes = buf.get(n..n + len).ok_or(HpackError::Truncated)?;
    Ok((huffman, bytes, n + len))
}

/// A string's decoded bytes (into `scratch`), up to `max` of them.
fn decoded<'a>(
    huffman: bool,
    bytes: &'a [u8],
    scratch: &'a mut Vec<u8>,
    max: usize,
) -> Result<&'a [u8], HpackError> {
    if !huffman {
        return Ok(bytes);
    }
    scratch.clear();
    huffman::decode(bytes, scratch, max)?;
    Ok(scratch)
}

/// A string's decoded length (Huffman strings are decoded to count it).
fn decoded_len(huffman: bool, bytes: &[u8], scratch: &mut Vec<u8>) -> Result<usize, HpackError> {
    decoded(huffman, bytes, scratch, usize::MAX).map(<[u8]>::len)
}

/// What a block held, and whether it was rewritten.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// It carried a `:authority` literal h2 would refuse (now replaced).
    pub fixed: bool,
}

/// A valid authority of exactly `len` bytes (`len` > 0): `localhost`, cut
/// or padded with `x`.
pub fn same_length_authority(len: usize) -> Vec<u8> {
    let mut a: Vec<u8> = b"localhost".iter().copied().take(len).collect();
    a.resize(len, b'x');
    a
}

/// Scans one complete header block, appending it to `out` with every
/// `:authority` literal that `bad` judges unacceptable replaced by
/// [`same_length_authority`], and keeps `table` in step with the client's.
pub fn rewrite(
    block: &[u8],
    table: &mut Table,
    bad: impl Fn(&[u8]) -> bool,
    out: &mut Vec<u8>,
) -> Result<Scanned, HpackError> {
    let mut scanned = Scanned::default();
    let (mut at, mut fields) = (0, 0);
    let mut scratch = Vec::new();
    while at < block.len() {
        let rest = &block[at..];
        let first = rest[0];
        if first & 0xe0 == 0x20 {
            // Dynamic table size update: only before the first field.
            let (size, n) = integer(rest, 5)?;
            if fields > 0 {
                return Err(HpackError::LateSizeUpdate);
            }
            if size > TABLE_SIZE {
                return Err(HpackError::TableSize(size));
            }
            table.resize(size);
            out.extend_from_slice(&rest[..n]);
            at += n;
            continue;
        }
        fields += 1;
        if fields > MAX_FIELDS {
            return Err(HpackError::TooManyFields);
        }
        if first & 0x80 != 0 {
            // Indexed field: copied; an entry replaced when it was added
            // is the replacement in both tables.
            let (index, n) = integer(rest, 7)?;
            if index == 0 {
                return Err(HpackError::Index(0));
            }
            table.name(index)?;
            out.extend_from_slice(&rest[..n]);
            at += n;
            continue;
        }
        // A literal: with incremental indexing (01), or without (0000) or
        // never (0001) indexed.
        let indexing = first & 0x40 != 0;
        let (name_index, mut n) = integer(rest, if indexing { 6 } else { 4 })?;
        let (authority, name_len) = if name_index == 0 {
            let (huff, bytes, used) = string(&rest[n..])?;
            n += used;
            let name = decoded(huff, bytes, &mut scratch, usize::MAX)?;
            (name == b":authority", name.len())
        } else {
            table.name(name_index)?
        };
        let name_end = n;
        let (huff, value, used) = string(&rest[n..])?;
        let end = n + used;
        let mut value_len = None;
        if authority {
            let v = decoded(huff, value, &mut scratch, usize::MAX)?;
            value_len = Some(v.len());
            if !v.is_empty() && bad(v) {
                // Same name, same kind of literal, the value as a plain
                // string of the same length.
                let replacement = same_length_authority(v.len());
                out.extend_from_slice(&rest[..name_end]);
                put_integer(replacement.len(), 7, 0, out);
                out.extend_from_slice(&replacement);
                scanned.fixed = true;
            } else {
                out.extend_from_slice(&rest[..end]);
            }
        } else {
            out.extend_from_slice(&rest[..end]);
        }
        if indexing {
            let value_len = match value_len {
                Some(l) => l,
                None => decoded_len(huff, value, &mut scratch)?,
            };
            table.insert(Entry {
                authority,
                name_len,
                size: name_len + value_len + 32,
            });
        }
        at += end;
    }
    Ok(scanned)
}

/// Writes an integer with an `n`-bit prefix whose other bits are `flags`.
fn put_integer(value: usize, n: u8, flags: u8, out: &mut Vec<u8>) {
    let mask = (1usize << n) - 1;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    let mut rest = value - mask;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

#[cfg(test)]
mod tests;
