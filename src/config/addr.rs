//! `host:port` addresses in settings: syntax, and what each use allows.
//!
//! Owns the rules for address settings: a host is a DNS-style name, a dotted
//! IPv4 address, or a bracketed IPv6 address (`[::1]:12000`); the port is
//! decimal digits 0-65535. Bind addresses may use port 0 and wildcard hosts;
//! addresses others dial (advertise, join) may not use port 0, and advertise
//! addresses may not be wildcards. It does not resolve names or open sockets
//! (a name that does not resolve fails later, at bind or dial time).

use super::ConfigError;
use super::error::invalid;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How an address setting is used, which decides what it may contain.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum AddrUse {
    /// We listen on it: port 0 (ephemeral) and wildcard hosts are fine.
    Bind,
    /// Others dial it: needs a real port and a routable host.
    Advertise,
    /// We dial it: needs a real port.
    Dial,
}

/// Check the address setting `key` with value `addr` for `usage`.
pub(super) fn check_addr(key: &str, addr: &str, usage: AddrUse) -> Result<(), ConfigError> {
    let (host, port) = split_host_port(addr).map_err(|reason| invalid(key, addr, reason))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(key, addr, "port must be a number 0-65535"))?;
    if port == 0 && usage != AddrUse::Bind {
        return Err(invalid(key, addr, "port 0 cannot be dialled"));
    }
    if usage == AddrUse::Advertise && host.is_some_and(|ip| ip.is_unspecified()) {
        return Err(invalid(
            key,
            addr,
            "a wildcard host cannot be advertised; use a name peers can reach",
        ));
    }
    Ok(())
}

/// Bracket a bare IPv6 host so that `host:port` is a valid address; any
/// other host is returned as it is.
pub(super) fn host_for_port(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Split and syntax-check `host:port`. Returns the host's IP if it is a
/// literal, and the port text (all digits, not yet range-checked).
fn split_host_port(addr: &str) -> Result<(Option<IpAddr>, &str), &'static str> {
    const EXPECTED: &str = "expected host:port";
    let (ip, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (h, rest) = rest.split_once(']').ok_or(EXPECTED)?;
        let port = rest.strip_prefix(':').ok_or(EXPECTED)?;
        let ip: Ipv6Addr = h.parse().map_err(|_| "invalid IPv6 address in brackets")?;
        (Some(IpAddr::V6(ip)), port)
    } else {
        let (host, port) = addr.rsplit_once(':').ok_or(EXPECTED)?;
        if host.is_empty() {
            return Err("host must not be empty");
        }
        if host.contains(':') {
            return Err("IPv6 hosts must be written in brackets, e.g. [::1]:12000");
        }
        (check_host(host)?, port)
    };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err("port must be a number 0-65535");
    }
    Ok((ip, port))
}

/// A dotted IPv4 literal, or a host name of labels of letters, digits, `-`
/// and `_` (at most 63 bytes each, 253 in all, an optional final dot).
fn check_host(host: &str) -> Result<Option<IpAddr>, &'static str> {
    if host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // Looks like a dotted quad: it must be one, "300.1.2.3" is a typo.
        return host
            .parse::<Ipv4Addr>()
            .map(|ip| Some(IpAddr::V4(ip)))
            .map_err(|_| "invalid IPv4 address");
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    let ok = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(None)
    } else {
        Err("invalid host name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(addr: &str, usage: AddrUse) -> Option<String> {
        match check_addr("k", addr, usage) {
            Ok(()) => None,
            Err(ConfigError::Invalid { reason, .. }) => Some(reason),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn syntax_reasons() {
        for (addr, want) in [
            ("localhost", "expected host:port"),
            (":1", "host must not be empty"),
            ("::1:1", "IPv6 hosts must be written in brackets"),
            ("[zz]:1", "invalid IPv6 address in brackets"),
            ("[::1]1", "expected host:port"),
            ("300.1.2.3:1", "invalid IPv4 address"),
            ("a..b:1", "invalid host name"),
            (&format!("{}:1", "a".repeat(64)), "invalid host name"),
            ("h:+1", "port must be a number"),
            ("h:65536", "port must be a number"),
        ] {
            let got = reason(addr, AddrUse::Bind).unwrap_or_default();
            assert!(got.contains(want), "{addr}: {got:?} lacks {want:?}");
        }
        let long = format!("{}.{}:1", "a".repeat(63), "b".repeat(63));
        assert_eq!(reason(&long, AddrUse::Dial), None);
    }

    #[test]
    fn uses_allow_different_ports_and_hosts() {
        assert_eq!(reason("0.0.0.0:0", AddrUse::Bind), None);
        assert_eq!(reason("[::]:0", AddrUse::Bind), None);
        assert!(reason("h:0", AddrUse::Dial).unwrap().contains("port 0"));
        assert!(
            reason("h:0", AddrUse::Advertise)
                .unwrap()
                .contains("port 0")
        );
        assert!(
            reason("[::]:1", AddrUse::Advertise)
                .unwrap()
                .contains("wildcard")
        );
        assert_eq!(reason("0.0.0.0:1", AddrUse::Dial), None);
    }

    #[test]
    fn bare_ipv6_hosts_get_brackets() {
        assert_eq!(host_for_port("::1"), "[::1]");
        assert_eq!(host_for_port("[::1]"), "[::1]");
        assert_eq!(host_for_port("10.0.0.5"), "10.0.0.5");
    }
}
