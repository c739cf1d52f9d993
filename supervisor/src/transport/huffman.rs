//! HPACK's Huffman code (RFC 7541, Appendix B), decoded.
//!
//! The code is canonical (codes of one length are consecutive, in symbol
//! order, and each length's first code follows from the last one's), so a
//! symbol's code length is the whole table, and decoding needs only where
//! each length's codes start. The tables are built at compile time; a string
//! decodes at a few nanoseconds per bit, with no allocation beyond its output
//! (loona-hpack builds a decoder of hash maps for every string, which made a
//! header block of empty Huffman strings cost seconds).

/// Each symbol's code length in bits: the bytes 0..=255, then EOS (256).
const LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

/// The end-of-string symbol, which must not appear in a string.
const EOS: u16 = 256;
const MAX_LEN: usize = 30;

/// Where each length's codes start, and the symbols in code order.
struct Canonical {
    /// The first code of each length.
    first: [u32; MAX_LEN + 1],
    /// How many codes each length has.
    count: [u32; MAX_LEN + 1],
    /// Where each length's symbols start in `symbols`.
    offset: [usize; MAX_LEN + 1],
    /// Symbols sorted by (length, symbol): the order of their codes.
    symbols: [u16; 257],
}

const fn canonical() -> Canonical {
    let mut t = Canonical {
        first: [0; MAX_LEN + 1],
        count: [0; MAX_LEN + 1],
        offset: [0; MAX_LEN + 1],
        symbols: [0; 257],
    };
    let mut code: u32 = 0;
    let mut prev_len: usize = 0;
    let mut k = 0;
    let mut len = 1;
    while len <= MAX_LEN {
        t.offset[len] = k;
        let mut sym = 0;
        while sym < 257 {
            if LENGTHS[sym] as usize == len {
                if k > 0 {
                    code = (code + 1) << (len - prev_len);
                }
                if t.count[len] == 0 {
                    t.first[len] = code;
                }
                prev_len = len;
                t.count[len] += 1;
                t.symbols[k] = sym as u16;
                k += 1;
            }
            sym += 1;
        }
        len += 1;
    }
    t
}

static TABLE: Canonical = canonical();

/// Why a Huffman string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    #[error("EOS inside a Huffman-coded string")]
    Eos,
    #[error("a Huffman-coded string's padding is not a prefix of EOS")]
    Padding,
    #[error("a Huffman-coded string longer than allowed")]
    TooLong,
}

/// Appends the decoding of `src` to `out`, refusing to write more than
/// `max` bytes.
pub fn decode(src: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), HuffmanError> {
    let t = &TABLE;
    let start = out.len();
    let (mut code, mut len) = (0u32, 0usize);
    for &byte in src {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            if len > MAX_LEN {
                // No code is this long: only EOS's 30 ones come close.
                return Err(HuffmanError::Eos);
            }
            let index = code.wrapping_sub(t.first[len]);
            if code >= t.first[len] && index < t.count[len] {
                let symbol = t.symbols[t.offset[len] + index as usize];
                if symbol == EOS {
                    return Err(HuffmanError::Eos);
                }
                if out.len() - start >= max {
                    return Err(HuffmanError::TooLong);
                }
                out.push(symbol as u8);
                (code, len) = (0, 0);
            }
        }
    }
    // At most 7 bits of padding, all ones (the start of EOS).
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HuffmanError::Padding);
    }
    Ok(())
}

/// Encodes with the canonical codes: the tests' own encoder.
#[cfg(test)]
pub fn encode(bytes: &[u8]) -> Vec<u8> {
    let mut codes = [0u32; 257];
    for len in 1..=MAX_LEN {
        for i in 0..TABLE.count[len] {
            let sym = TABLE.symbols[TABLE.offset[len] + i as usize];
            codes[sym as usize] = TABLE.first[len] + i;
        }
    }
    let (mut acc, mut bits, mut out) = (0u64, 0u32, Vec::new());
    for &b in bytes {
        acc = (acc << LENGTHS[b as usize]) | u64::from(codes[b as usize]);
        bits += u32::from(LENGTHS[b as usize]);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    if bits > 0 {
        out.push(((acc << (8 - bits)) as u8) | ((1u8 << (8 - bits)) - 1));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(src: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(src, &mut out, usize::MAX).map(|()| out)
    }

    #[test]
    fn every_byte_decodes_as_loona_hpack_reads_it() {
        let mut oracle = loona_hpack::huffman::HuffmanDecoder::new();
        for b in 0..=255u8 {
            let coded = encode(&[b]);
            assert_eq!(oracle.decode(&coded).ok(), Some(vec![b]), "{b}: {coded:?}");
            assert_eq!(decoded(&coded), Ok(vec![b]), "{b}");
        }
        let text: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 256) as u8).collect();
        let coded = encode(&text);
        assert_eq!(oracle.decode(&coded).ok().as_deref(), Some(&text[..]));
        assert_eq!(decoded(&coded).as_deref(), Ok(&text[..]));
    }

    #[test]
    fn known_strings_and_malformed_ones() {
        // RFC 7541 C.4.1: "www.example.com".
        let www = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        assert_eq!(decoded(&www).as_deref(), Ok(&b"www.example.com"[..]));
        assert_eq!(decoded(&[]), Ok(vec![]));
        // EOS (30 ones) in a string; padding of 8 ones; padding with a zero.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xfc]), Err(HuffmanError::Eos));
        assert_eq!(decoded(&[0xff]), Err(HuffmanError::Padding));
        assert_eq!(decoded(&[0x1e]), Err(HuffmanError::Padding)); // "a" (00011), then 110
        let mut out = Vec::new();
        assert_eq!(decode(&www, &mut out, 3), Err(HuffmanError::TooLong));
    }
}
