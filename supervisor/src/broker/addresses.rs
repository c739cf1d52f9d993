//! Which IP addresses a plugin may reach without naming them.
//!
//! A plugin allowed `*.example.com` must not be able to reach tarkd's own host,
//! the LAN or a cloud metadata service because someone pointed a DNS record there
//! (or because a URL wrote `127.0.0.1` as `2130706433`). Every address a host
//! resolves to, and every IP literal, is classified here; anything that is not an
//! ordinary public unicast address is refused unless the operator's allowlist
//! names that exact host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A cloud provider's instance metadata service (credentials of the host's
/// own identity): refused even to a plugin whose entry names it, unless
/// tarkd's own policy does too.
pub const METADATA: &str = "cloud metadata";

/// Why an address is not publicly routable, or `None` when it is.
pub fn restricted(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => restricted_v6(v6),
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        // The metadata services first: the most valuable target deserves its name.
        // AWS, GCP, Azure, OpenStack, DigitalOcean; AWS ECS task credentials;
        // Alibaba Cloud; Oracle Cloud.
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => METADATA,
        _ if ip == Ipv4Addr::new(169, 254, 170, 2) => METADATA,
        _ if ip == Ipv4Addr::new(100, 100, 100, 200) => METADATA,
        _ if ip == Ipv4Addr::new(192, 0, 0, 192) => METADATA,
        (0, _, _) => "unspecified",
        (10, _, _) => "private",
        (100, 64..=127, _) => "shared (carrier-grade NAT)",
        (127, _, _) => "loopback",
        (169, 254, _) => "link-local",
        (172, 16..=31, _) => "private",
        (192, 0, 0) => "reserved (IETF protocol assignments)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (192, 88, 99) => "reserved (6to4 relay)",
        (192, 168, _) => "private",
        (198, 18..=19, _) => "reserved (benchmarking)",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn restricted_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    // Addresses that carry an IPv4 address inside are judged by that address.
    if let Some(v4) = embedded_v4(ip) {
        return restricted_v4(v4);
    }
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254] => METADATA,
        [0x0064, 0xff9b, 0x0001, ..] => "reserved (local-use NAT64)",
        [0x0100, 0, 0, 0, ..] => "reserved (discard)",
        [0x2001, 0x0000, ..] => "reserved (Teredo)",
        [0x2001, 0x0db8, ..] => "documentation",
        [x, ..] if x & 0xfe00 == 0xfc00 => "unique-local",
        [x, ..] if x & 0xffc0 == 0xfe80 => "link-local",
        [x, ..] if x & 0xffc0 == 0xfec0 => "site-local",
        [x, ..] if x & 0xff00 == 0xff00 => "multicast",
        [0, ..] => "reserved",
        _ => return None,
    })
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match s {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(v4(hi, lo)),
        // `::` and `::1` are IPv6's own; other `::a.b.c.d` are IPv4-compatible.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => None,
        [0, 0, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x0064, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(v4(hi, lo)),
        [0x2002, hi, lo, ..] => Some(v4(hi, lo)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("93.184.215.14", None),
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("192.167.255.255", None),
            ("169.253.1.1", None),
            ("126.255.255.255", None),
            ("128.0.0.1", None),
            ("223.255.255.255", None),
            ("127.0.0.1", Some("loopback")),
            ("127.255.255.254", Some("loopback")),
            ("10.0.0.1", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.1.1", Some("link-local")),
            ("169.254.169.254", Some("cloud metadata")),
            ("100.100.100.200", Some("cloud metadata")),
            ("169.254.170.2", Some("cloud metadata")),
            ("192.0.0.192", Some("cloud metadata")),
            ("192.0.0.193", Some("reserved (IETF protocol assignments)")),
            ("100.64.0.1", Some("shared (carrier-grade NAT)")),
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("unspecified")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.255", Some("multicast")),
            ("240.0.0.1", Some("reserved")),
            ("255.255.255.255", Some("reserved")),
            ("192.0.0.8", Some("reserved (IETF protocol assignments)")),
            ("192.0.2.1", Some("documentation")),
            ("198.18.0.1", Some("reserved (benchmarking)")),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001::200e", None),
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:7f00:1", Some("loopback")),
            ("::ffff:169.254.169.254", Some("cloud metadata")),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some("loopback")),
            ("::10.1.2.3", Some("private")),
            ("64:ff9b::10.0.0.1", Some("private")),
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b:1::1", Some("reserved (local-use NAT64)")),
            ("2002:7f00:1::", Some("loopback")),
            ("2002:c0a8:101::1", Some("private")),
            ("2002:808:808::1", None),
            ("2001::1", Some("reserved (Teredo)")),
            ("2001:db8::1", Some("documentation")),
            ("fc00::1", Some("unique-local")),
            ("fdff:ffff::1", Some("unique-local")),
            ("fd00:ec2::254", Some("cloud metadata")),
            ("fe80::1", Some("link-local")),
            ("febf::1", Some("link-local")),
            ("fec0::1", Some("site-local")),
            ("ff02::1", Some("multicast")),
            ("100::1", Some("reserved (discard)")),
            ("::2:3:4:5", Some("reserved")),
        ];
        for (ip, want) in cases {
            let parsed: Result<IpAddr, _> = ip.parse();
            assert!(parsed.is_ok(), "{ip} parses");
            if let Ok(parsed) = parsed {
                assert_eq!(restricted(parsed), *want, "{ip}");
            }
        }
    }

    #[test]
    fn every_loopback_and_private_v4_is_refused_in_every_v6_form() {
        for v4 in [
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(10, 9, 8, 7),
            Ipv4Addr::new(192, 168, 0, 1),
            Ipv4Addr::new(169, 254, 169, 254),
        ] {
            let [a, b, c, d] = v4.octets();
            let (hi, lo) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
            for v6 in [
                v4.to_ipv6_mapped(),
                v4.to_ipv6_compatible(),
                Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, hi, lo),
                Ipv6Addr::new(0x2002, hi, lo, 0, 0, 0, 0, 1),
            ] {
                assert!(restricted(IpAddr::V6(v6)).is_some(), "{v6} ({v4})");
            }
        }
    }
}
