//! Which addresses a granted *name* may connect to.
//!
//! A manifest grants a name (`http://vms.lan:8080`); the host resolves it and
//! checks every address before connecting to it. A name never reaches:
//! - this machine: any address of any of its interfaces (read again at most
//!   once a second, so an address added later is seen), loopback, unspecified;
//! - link-local, multicast, broadcast and reserved addresses;
//! - the metadata services of the big clouds ([`METADATA`]);
//! - any of these embedded in IPv6: IPv4-mapped (`::ffff:a.b.c.d`),
//!   IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`)
//!   and 6to4 (`2002:AABB:CCDD::/48`).
//!
//! Private networks (10/8, 172.16/12, 192.168/16, fc00::/7) stay reachable
//! by name: that is where cameras live. An operator who means to reach one of
//! the refused addresses grants the IP literal itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Cloud metadata and platform services, as their clouds document them:
/// AWS (IMDS v4 and v6, its DNS and time), GCP and Azure (169.254.169.254),
/// Azure's wire server, Alibaba Cloud, Oracle Cloud's legacy address, Tencent
/// Cloud, AWS ECS task metadata, GCP's IPv6 metadata.
pub const METADATA: [IpAddr; 10] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 253)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 123)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(169, 254, 0, 23)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V4(Ipv4Addr::new(192, 0, 0, 192)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254)),
    IpAddr::V6(Ipv6Addr::new(0xfd20, 0x00ce, 0, 0, 0, 0, 0, 0x254)),
];

/// Why a name may not connect to an address; `None` if it may.
pub fn refused_for_name(ip: IpAddr) -> Option<&'static str> {
    if METADATA.contains(&ip) {
        return Some("a cloud metadata service");
    }
    if let Some(why) = refused_by_kind(ip) {
        return Some(why);
    }
    if this_machine().contains(&ip) {
        return Some("this machine");
    }
    match embedded_v4(ip) {
        Some(v4) => {
            refused_for_name(IpAddr::V4(v4)).map(|_| "an IPv6 form of a refused IPv4 address")
        }
        None => None,
    }
}

fn refused_by_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback (this machine)")
            } else if v4.is_unspecified() || a == 0 {
                Some("unspecified (this machine)")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_multicast() || v4.is_broadcast() || a >= 240 {
                Some("multicast, broadcast or reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback (this machine)")
            } else if v6.is_unspecified() {
                Some("unspecified (this machine)")
            } else if (first & 0xffc0) == 0xfe80 || (first & 0xffc0) == 0xfec0 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

/// The IPv4 address an IPv6 address carries, in the forms that route to it.
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(mapped) = v6.to_ipv4_mapped() {
        return Some(mapped);
    }
    // IPv4-compatible (::a.b.c.d, deprecated but still routed by some stacks).
    if s[..6] == [0; 6] {
        return Some(low);
    }
    // NAT64: the well-known prefix and the local-use one (RFC 6052, RFC 8215).
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) {
        return Some(low);
    }
    // 6to4: 2002:AABB:CCDD::/48.
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// How long a reading of this machine's addresses is trusted.
const INTERFACES_TTL: Duration = Duration::from_secs(1);

/// Every address of every interface of this machine, read at most once a
/// second. If the interfaces cannot be read, nothing is trusted: the reading
/// holds only `0.0.0.0`, and loopback and unspecified are refused anyway.
fn this_machine() -> Vec<IpAddr> {
    static READING: Mutex<Option<(Instant, Vec<IpAddr>)>> = Mutex::new(None);
    let mut reading = READING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((at, addrs)) = reading.as_ref()
        && at.elapsed() < INTERFACES_TTL
    {
        return addrs.clone();
    }
    let addrs: Vec<IpAddr> = match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces.into_iter().map(|iface| iface.ip()).collect(),
        Err(error) => {
            tracing::warn!("cannot read this machine's interfaces: {error}");
            vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
        }
    };
    *reading = Some((Instant::now(), addrs.clone()));
    addrs
}

/// This machine's non-loopback interface addresses (for tests and `check`).
pub fn this_machine_addresses() -> Vec<IpAddr> {
    this_machine()
        .into_iter()
        .filter(|ip| !ip.is_loopback())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> Option<&'static str> {
        refused_for_name(text.parse().unwrap())
    }

    #[test]
    fn names_never_reach_this_machine_or_metadata() {
        for addr in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "169.254.1.1",
            "100.100.100.200",
            "168.63.129.16",
            "192.0.0.192",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "ff02::1",
            "fd00:ec2::254",
            "fd20:ce::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::7f00:1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(
                refused(addr).is_some(),
                "{addr} should be refused for a name"
            );
        }
    }

    #[test]
    fn camera_networks_stay_reachable() {
        for addr in [
            "10.0.0.5",
            "172.16.4.4",
            "192.168.1.20",
            "100.64.1.1",
            "8.8.8.8",
            "fd12:3456::7",
            "::ffff:10.0.0.5",
            "64:ff9b::a00:5",
            "2001:db8::1",
        ] {
            assert_eq!(refused(addr), None, "{addr} should stay reachable");
        }
    }

    #[test]
    fn this_machines_own_addresses_are_refused() {
        for ip in this_machine_addresses() {
            assert!(refused_for_name(ip).is_some(), "{ip} is this machine's");
        }
    }
}
