//! HPACK reading and the same-length rewrite, checked against loona-hpack as
//! an independent decoder of what the server would see.

use loona_hpack::{Decoder, Encoder};

use super::*;

#[test]
fn integers_as_in_rfc_7541_c1() {
    type Case<'a> = (&'a [u8], u8, Result<(usize, usize), HpackError>);
    let cases: &[Case] = &[
        (&[0x0a], 5, Ok((10, 1))),
        (&[0x1f, 0x9a, 0x0a], 5, Ok((1337, 3))),
        (&[0x2a], 8, Ok((42, 1))),
        (&[0x1f], 5, Err(HpackError::Truncated)),
        (&[0x1f, 0x80], 5, Err(HpackError::Truncated)),
        (
            &[0x7f, 0xff, 0xff, 0xff, 0xff, 0x0f],
            7,
            Err(HpackError::Integer),
        ),
        (
            &[0x7f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            7,
            Err(HpackError::Integer),
        ),
        (&[], 7, Err(HpackError::Truncated)),
    ];
    for (bytes, n, want) in cases {
        assert_eq!(integer(bytes, *n), *want, "{bytes:x?}");
    }
    for value in [0, 1, 30, 31, 126, 127, 128, 1337, 70_000, MAX_INT] {
        for n in [4u8, 5, 6, 7] {
            let mut out = Vec::new();
            put_integer(value, n, 0, &mut out);
            assert_eq!(integer(&out, n), Ok((value, out.len())), "{value} / {n}");
        }
    }
}

#[test]
fn static_names_are_rfc_7541_appendix_a() {
    let mut oracle = Decoder::new();
    for (i, name) in STATIC_NAMES.iter().enumerate() {
        let decoded = oracle.decode(&[0x80 | (i as u8 + 1)]);
        assert_eq!(
            decoded.ok().and_then(|h| h.first().map(|(n, _)| n.clone())),
            Some(name.as_bytes().to_vec()),
            "index {}",
            i + 1
        );
    }
}

fn bad(v: &[u8]) -> bool {
    crate::transport::headers::needs_fix(v)
}

/// What the server's decoder reads from `rewritten`, against the client's
/// headers with each bad authority replaced.
/// A decoded header list.
type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn server_reads(blocks: &[Vec<u8>]) -> Result<Vec<Fields>, HpackError> {
    let mut table = Table::default();
    let mut server = Decoder::new();
    let mut seen = Vec::new();
    for block in blocks {
        let mut out = Vec::new();
        rewrite(block, &mut table, bad, &mut out)?;
        seen.push(server.decode(&out).map_err(|_| HpackError::Truncated)?);
    }
    Ok(seen)
}

fn expected(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| {
            let fixed = n == b":authority" && !v.is_empty() && bad(v);
            let v = if fixed {
                same_length_authority(v.len())
            } else {
                v.clone()
            };
            (n.clone(), v)
        })
        .collect()
}

#[test]
fn the_servers_table_stays_the_clients_through_evictions() -> Result<(), HpackError> {
    let path = b"%2Frun%2Ftarkd%2Ftarkd.sock".to_vec();
    let mut client = Encoder::new();
    let (mut blocks, mut sent) = (Vec::new(), Vec::new());
    // Each call adds a fresh header value, so the table fills and the
    // authority entry is evicted and sent again, literally, many times.
    for call in 0..400 {
        let headers = vec![
            (b":method".to_vec(), b"POST".to_vec()),
            (b":scheme".to_vec(), b"http".to_vec()),
            (
                b":path".to_vec(),
                format!("/x.Y/M{}", call % 3).into_bytes(),
            ),
            (
                b":authority".to_vec(),
                if call % 50 == 49 {
                    b"localhost".to_vec()
                } else {
                    path.clone()
                },
            ),
            (
                b"grpc-timeout".to_vec(),
                format!("{}m", 1000 + call).into_bytes(),
            ),
            (
                format!("x-call-{}", call % 7).into_bytes(),
                vec![b'v'; call % 90],
            ),
        ];
        blocks.push(client.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))));
        sent.push(headers);
    }
    let seen = server_reads(&blocks)?;
    for (i, (seen, sent)) in seen.iter().zip(&sent).enumerate() {
        assert_eq!(seen, &expected(sent), "call {i}");
    }
    Ok(())
}

#[test]
fn huffman_coded_and_unindexed_authorities_are_replaced() -> Result<(), HpackError> {
    let value = b"%2Ftmp%2Fs.sock";
    let coded = crate::transport::huffman::encode(value);
    let mut block = Vec::new();
    // :method POST (indexed), then :authority with a Huffman value, indexed
    // name 1, without indexing; then the same literal name, never indexed,
    // plain; then with indexing, Huffman name and value.
    block.push(0x83);
    block.push(0x01);
    put_integer(coded.len(), 7, 0x80, &mut block);
    block.extend_from_slice(&coded);
    block.push(0x10);
    block.push(10);
    block.extend_from_slice(b":authority");
    block.push(value.len() as u8);
    block.extend_from_slice(value);
    block.push(0x40);
    let name = crate::transport::huffman::encode(b":authority");
    put_integer(name.len(), 7, 0x80, &mut block);
    block.extend_from_slice(&name);
    put_integer(coded.len(), 7, 0x80, &mut block);
    block.extend_from_slice(&coded);
    // And a reference to it: dynamic index 62.
    block.push(0x80 | 62);
    let mut table = Table::default();
    let mut out = Vec::new();
    assert_eq!(
        rewrite(&block, &mut table, bad, &mut out)?,
        Scanned { fixed: true }
    );
    let seen = Decoder::new()
        .decode(&out)
        .map_err(|_| HpackError::Truncated)?;
    let replaced = same_length_authority(value.len());
    let authorities: Vec<_> = seen
        .iter()
        .filter(|(n, _)| n == b":authority")
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(authorities, vec![replaced; 4]);
    assert_eq!(table.entries.len(), 1);
    assert_eq!(table.size, 10 + value.len() + 32);
    Ok(())
}

#[test]
fn valid_blocks_are_copied_byte_for_byte() -> Result<(), HpackError> {
    let mut client = Encoder::new();
    let headers = [
        (&b":authority"[..], &b"localhost:50051"[..]),
        (b":path", b"/a.B/C"),
        (b"user-agent", b"grpc-go/1.70"),
    ];
    let block = client.encode(headers.iter().copied());
    let mut out = Vec::new();
    let scanned = rewrite(&block, &mut Table::default(), bad, &mut out)?;
    assert_eq!((scanned.fixed, out), (false, block));
    Ok(())
}

#[test]
fn malformed_and_oversized_blocks_are_refused() {
    let mut many = vec![0x82; MAX_FIELDS];
    let cases: Vec<(&str, Vec<u8>, HpackError)> = vec![
        ("index 0", vec![0x80], HpackError::Index(0)),
        (
            "empty dynamic table",
            vec![0x80 | 62],
            HpackError::Index(62),
        ),
        ("past the static table", vec![0xbf], HpackError::Index(63)),
        (
            "literal cut short",
            vec![0x41, 0x05, b'a'],
            HpackError::Truncated,
        ),
        (
            "name cut short",
            vec![0x40, 0x03, b'a'],
            HpackError::Truncated,
        ),
        (
            "size update over 4096",
            vec![0x3f, 0xe2, 0x1f],
            HpackError::TableSize(4097),
        ),
        (
            "size update after a field",
            vec![0x82, 0x20],
            HpackError::LateSizeUpdate,
        ),
        (
            "a Huffman EOS",
            vec![0x41, 0x84, 0xff, 0xff, 0xff, 0xff],
            HpackError::Huffman(huffman::HuffmanError::Eos),
        ),
        (
            "too many fields",
            {
                many.push(0x82);
                many
            },
            HpackError::TooManyFields,
        ),
    ];
    for (what, block, want) in cases {
        let got = rewrite(&block, &mut Table::default(), bad, &mut Vec::new());
        assert_eq!(got, Err(want), "{what}");
    }
    let ok = vec![0x82; MAX_FIELDS];
    assert!(rewrite(&ok, &mut Table::default(), bad, &mut Vec::new()).is_ok());
}

#[test]
fn replacements_are_valid_authorities_of_every_length() {
    for len in 1..=4096 {
        let a = same_length_authority(len);
        assert_eq!(a.len(), len);
        assert!(!bad(&a), "{}", String::from_utf8_lossy(&a));
    }
}
