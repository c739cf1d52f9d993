//! Guest memory is hostile input. Every pointer and length a core module hands
//! the host (an import's arguments, an export's result, what `alloc` returned)
//! is checked here against the memory's size *at the moment of access*, before
//! a byte is read or written; pure functions over the memory's bytes, so they
//! are table-tested and fuzzed without a guest.

use std::ops::Range;

/// Why a guest pointer or length was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    #[error("negative length {0}")]
    NegativeLength(i32),
    #[error("range {ptr:#x}+{len} is outside the plugin's {size}-byte memory")]
    OutOfBounds { ptr: u32, len: u32, size: usize },
    #[error("{len} bytes exceed the limit of {max} for this value")]
    TooLong { len: u32, max: usize },
    #[error("{len} bytes do not fit the {room}-byte buffer")]
    NoRoom { len: usize, room: usize },
    #[error("not UTF-8 (at byte {0})")]
    NotUtf8(usize),
    #[error("null pointer")]
    Null,
    #[error("buffers at {a:?} and {b:?} overlap")]
    Overlap { a: Range<usize>, b: Range<usize> },
}

/// The byte range `ptr..ptr+len` if all of it lies in a memory of `size` bytes.
/// A wasm32 pointer is an unsigned offset carried in an `i32`; a length must be
/// non-negative and at most `max`.
pub fn range(size: usize, ptr: i32, len: i32, max: usize) -> Result<Range<usize>, MemoryError> {
    let len = u32::try_from(len).map_err(|_| MemoryError::NegativeLength(len))?;
    if len as usize > max {
        return Err(MemoryError::TooLong { len, max });
    }
    let ptr = ptr as u32;
    let start = ptr as usize;
    match start.checked_add(len as usize) {
        Some(end) if end <= size => Ok(start..end),
        _ => Err(MemoryError::OutOfBounds { ptr, len, size }),
    }
}

/// The guest's bytes at `ptr..ptr+len`.
pub fn read(memory: &[u8], ptr: i32, len: i32, max: usize) -> Result<&[u8], MemoryError> {
    let r = range(memory.len(), ptr, len, max)?;
    Ok(&memory[r])
}

/// The guest's UTF-8 string at `ptr..ptr+len`.
pub fn read_str(memory: &[u8], ptr: i32, len: i32, max: usize) -> Result<&str, MemoryError> {
    let bytes = read(memory, ptr, len, max)?;
    std::str::from_utf8(bytes).map_err(|e| MemoryError::NotUtf8(e.valid_up_to()))
}

/// Writes `bytes` at `ptr` into a guest buffer of `room` bytes (the guest did
/// not say how big; `room` is the size the ABI's convention promises). Nothing
/// is written unless all of it fits both the buffer and the memory. Returns the
/// length written, as the ABI's `i32` result.
pub fn write(memory: &mut [u8], ptr: i32, bytes: &[u8], room: usize) -> Result<i32, MemoryError> {
    if bytes.len() > room {
        return Err(MemoryError::NoRoom {
            len: bytes.len(),
            room,
        });
    }
    let len = i32::try_from(bytes.len()).map_err(|_| MemoryError::NoRoom {
        len: bytes.len(),
        room,
    })?;
    let r = range(memory.len(), ptr, len, room)?;
    memory[r].copy_from_slice(bytes);
    Ok(len)
}

/// Checks a buffer `alloc` returned for `len` bytes: non-null and inside memory.
pub fn allocated(size: usize, ptr: i32, len: usize) -> Result<Range<usize>, MemoryError> {
    if ptr == 0 {
        return Err(MemoryError::Null);
    }
    let len32 = i32::try_from(len).map_err(|_| MemoryError::TooLong {
        len: u32::MAX,
        max: i32::MAX as usize,
    })?;
    range(size, ptr, len32, usize::MAX)
}

/// Refuses two host-requested buffers of one call that overlap: writing the
/// second would silently change the first.
pub fn disjoint(a: &Range<usize>, b: &Range<usize>) -> Result<(), MemoryError> {
    if a.start < b.end && b.start < a.end {
        return Err(MemoryError::Overlap {
            a: a.clone(),
            b: b.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    /// `(memory size, ptr, len, expected range)`.
    type Case = (usize, i32, i32, Result<Range<usize>, MemoryError>);

    #[test]
    fn ranges() {
        let cases: &[Case] = &[
            (100, 0, 0, Ok(0..0)),
            (100, 0, 100, Ok(0..100)),
            (100, 99, 1, Ok(99..100)),
            (100, 100, 0, Ok(100..100)),
            (
                100,
                100,
                1,
                Err(MemoryError::OutOfBounds {
                    ptr: 100,
                    len: 1,
                    size: 100,
                }),
            ),
            (
                100,
                101,
                0,
                Err(MemoryError::OutOfBounds {
                    ptr: 101,
                    len: 0,
                    size: 100,
                }),
            ),
            (100, 0, -1, Err(MemoryError::NegativeLength(-1))),
            (100, 0, i32::MIN, Err(MemoryError::NegativeLength(i32::MIN))),
            // A "negative" pointer is an offset past 2 GiB.
            (
                100,
                -1,
                1,
                Err(MemoryError::OutOfBounds {
                    ptr: u32::MAX,
                    len: 1,
                    size: 100,
                }),
            ),
            (
                usize::MAX,
                -1,
                i32::MAX,
                Err(MemoryError::TooLong {
                    len: i32::MAX as u32,
                    max: MAX,
                }),
            ),
            (
                100,
                50,
                60,
                Err(MemoryError::OutOfBounds {
                    ptr: 50,
                    len: 60,
                    size: 100,
                }),
            ),
            (
                0,
                0,
                1,
                Err(MemoryError::OutOfBounds {
                    ptr: 0,
                    len: 1,
                    size: 0,
                }),
            ),
        ];
        for (size, ptr, len, want) in cases {
            assert_eq!(&range(*size, *ptr, *len, MAX), want, "{size} {ptr} {len}");
        }
    }

    #[test]
    fn reads_check_bounds_and_utf8() {
        let mem = b"hello\xffworld".to_vec();
        assert_eq!(read_str(&mem, 0, 5, MAX), Ok("hello"));
        assert_eq!(read_str(&mem, 6, 5, MAX), Ok("world"));
        assert_eq!(read_str(&mem, 4, 3, MAX), Err(MemoryError::NotUtf8(1)));
        assert!(read(&mem, 6, 6, MAX).is_err());
        assert_eq!(
            read(&mem, 0, 5, 4),
            Err(MemoryError::TooLong { len: 5, max: 4 })
        );
    }

    #[test]
    fn writes_never_pass_the_buffer_or_the_memory() {
        let mut mem = vec![0u8; 16];
        assert_eq!(write(&mut mem, 4, b"abc", 8), Ok(3));
        assert_eq!(&mem[4..7], b"abc");
        // Larger than the conventional buffer: refused, nothing written.
        assert_eq!(
            write(&mut mem, 0, b"123456789", 8),
            Err(MemoryError::NoRoom { len: 9, room: 8 })
        );
        assert_eq!(mem[0], 0);
        // Fits the buffer but not the memory.
        assert!(write(&mut mem, 14, b"abc", 8).is_err());
        assert_eq!(&mem[14..], &[0, 0]);
        assert!(write(&mut mem, -4, b"a", 8).is_err());
        assert_eq!(write(&mut mem, 16, b"", 8), Ok(0));
    }

    #[test]
    fn allocations_are_checked() {
        assert_eq!(allocated(100, 8, 16), Ok(8..24));
        assert_eq!(allocated(100, 0, 16), Err(MemoryError::Null));
        assert!(allocated(100, 90, 16).is_err());
        assert!(allocated(100, -8, 16).is_err());
        assert!(allocated(100, 8, usize::MAX).is_err());
        assert_eq!(disjoint(&(0..8), &(8..16)), Ok(()));
        assert_eq!(disjoint(&(0..0), &(0..8)), Ok(()));
        assert!(disjoint(&(0..9), &(8..16)).is_err());
        assert!(disjoint(&(8..16), &(0..9)).is_err());
        assert!(disjoint(&(0..100), &(10..20)).is_err());
    }
}
