//! The jail gives up every capability before the command runs.
//!
//! tark-jail is uid 0 of its own user namespace so that it can build the
//! jail's root ([`super::root`]); the command must not keep that power. So,
//! once the root is built: the bounding set is emptied (no capability can
//! ever come back), ambient capabilities are cleared, the securebits make
//! uid 0 nothing special at exec (`SECBIT_NOROOT`, locked, and no fixups on
//! uid changes), and the effective, permitted and inheritable sets are
//! emptied. What is left is checked with capget: a capability still held
//! refuses the command.

/// `securebits` (linux/securebits.h).
const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
const SECBIT_NO_SETUID_FIXUP: libc::c_ulong = 1 << 2;
const SECBIT_NO_SETUID_FIXUP_LOCKED: libc::c_ulong = 1 << 3;
const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
const SECBIT_NO_CAP_AMBIENT_RAISE: libc::c_ulong = 1 << 6;
const SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED: libc::c_ulong = 1 << 7;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_V3: u32 = 0x2008_0522;

#[repr(C)]
struct Header {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Data {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability for good (see the module doc).
pub fn drop_all() -> Result<(), String> {
    let fail = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
    // Past the last capability the kernel knows, PR_CAPBSET_DROP says EINVAL.
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
        {
            return Err(fail("emptying the capability bounding set"));
        }
    }
    // SAFETY: as above.
    if unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    } != 0
    {
        return Err(fail("clearing ambient capabilities"));
    }
    let bits = SECBIT_NOROOT
        | SECBIT_NOROOT_LOCKED
        | SECBIT_NO_SETUID_FIXUP
        | SECBIT_NO_SETUID_FIXUP_LOCKED
        | SECBIT_KEEP_CAPS_LOCKED
        | SECBIT_NO_CAP_AMBIENT_RAISE
        | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    // SAFETY: as above.
    if unsafe { libc::prctl(libc::PR_SET_SECUREBITS, bits, 0, 0, 0) } != 0 {
        return Err(fail("setting securebits"));
    }
    let mut header = Header {
        version: CAP_V3,
        pid: 0,
    };
    let none = [Data::default(); 2];
    // SAFETY: capset reads a v3 header and two data words.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, none.as_ptr()) } != 0 {
        return Err(fail("dropping capabilities"));
    }
    let mut left = [Data::default(); 2];
    // SAFETY: capget writes two data words for a v3 header.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, left.as_mut_ptr()) } != 0 {
        return Err(fail("reading capabilities back"));
    }
    if left
        .iter()
        .any(|d| d.effective | d.permitted | d.inheritable != 0)
    {
        return Err("capabilities are still held after dropping them all".into());
    }
    Ok(())
}
