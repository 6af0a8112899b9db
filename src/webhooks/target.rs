//! Where a webhook may point: `http(s)` URLs whose addresses are public, unless the operator
//! allows private targets. Checked when an endpoint is saved and again, address by address,
//! when each delivery connects (a name that resolves elsewhere later is refused then too).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use url::{Host, Url};

/// Why a URL cannot be a webhook target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("url must be an absolute http:// or https:// URL")]
    NotHttp,
    #[error("url must not carry a user name or password")]
    UserInfo,
    #[error("url must be https:// (plain http:// only when the operator sets webhooks.allow_private_targets)")]
    PlainHttp,
    /// A name that does not resolve, or resolves to an address a webhook may not reach: one
    /// answer for both, naming no address, so no tenant can map internal names through it.
    #[error("url host `{0}` does not resolve to a public address; webhooks go to public addresses (the operator may allow private ones with webhooks.allow_private_targets)")]
    NotPublic(String),
    /// An address literal in a special-purpose range (the caller wrote the address itself).
    #[error("url host `{host}` is a {range} address; webhooks go to public addresses (the operator may allow private ones with webhooks.allow_private_targets)")]
    Private { host: String, range: &'static str },
}

/// The URL, if it is one a webhook may name (scheme, host, no credentials): addresses aside.
pub fn parse(raw: &str) -> Result<Url, TargetError> {
    let url = Url::parse(raw).map_err(|_| TargetError::NotHttp)?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(TargetError::NotHttp);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::UserInfo);
    }
    Ok(url)
}

/// The range a forbidden address is in, or `None` for a public one. The ranges are the IANA
/// IPv4 and IPv6 Special-Purpose Address Registries' entries that are not globally reachable,
/// with multicast, the cloud metadata and wire-server addresses; an IPv6 address that carries
/// an IPv4 one (mapped, compatible, NAT64, 6to4) is judged by the IPv4 address it means.
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) => v6_range(v6),
    }
}

/// `(network, prefix length, name)`: IANA IPv4 Special-Purpose Address Registry, entries not
/// globally reachable (as of its 2024 revision), most specific first.
const V4_SPECIAL: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(169, 254, 169, 254), 32, "cloud metadata"),
    (Ipv4Addr::new(168, 63, 129, 16), 32, "cloud wire-server"),
    (Ipv4Addr::new(100, 100, 100, 200), 32, "cloud metadata"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "broadcast"),
    (Ipv4Addr::new(0, 0, 0, 0), 8, "unspecified"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "shared (carrier-grade NAT)",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignments"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation"),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        "reserved (6to4 relay anycast)",
    ),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
];

/// The IANA IPv6 Special-Purpose Address Registry's entries not globally reachable, with the
/// address architecture's own ranges (link-local, site-local, multicast) and cloud metadata.
/// The ranges that embed an IPv4 address are handled before this table.
const V6_SPECIAL: &[(Ipv6Addr, u8, &str)] = &[
    (
        Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
        128,
        "cloud metadata",
    ),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128, "loopback"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128, "unspecified"),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "local-use NAT64",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignments",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation",
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation",
    ),
    (
        Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0),
        16,
        "segment routing (SRv6)",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "private (unique local)",
    ),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "site-local"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

fn v4_range(ip: Ipv4Addr) -> Option<&'static str> {
    let ip = u32::from(ip);
    V4_SPECIAL.iter().find_map(|&(net, len, name)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        (ip & mask == u32::from(net) & mask).then_some(name)
    })
}

fn v6_range(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    let in_net = |net: Ipv6Addr, len: u8| {
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        bits & mask == u128::from(net) & mask
    };
    // Forms that carry an IPv4 address mean it: judged as that address.
    let low32 = Ipv4Addr::from(bits as u32);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_range(v4);
    }
    if in_net(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return v4_range(low32);
    }
    if in_net(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return v4_range(Ipv4Addr::from((bits >> 80) as u32));
    }
    if let Some(range) = V6_SPECIAL
        .iter()
        .find_map(|&(net, len, name)| in_net(net, len).then_some(name))
    {
        return Some(range);
    }
    // IPv4-compatible (`::a.b.c.d`, deprecated): nothing routes it; named by its IPv4 meaning.
    if in_net(Ipv6Addr::UNSPECIFIED, 96) {
        return Some(v4_range(low32).unwrap_or("reserved (IPv4-compatible)"));
    }
    None
}

/// Checks that `url` is HTTPS (unless the operator allows private targets, which also allows
/// plain HTTP) and every address its host has (an IP literal, or what the name resolves to).
pub async fn check(url: &Url, allow_private: bool) -> Result<(), TargetError> {
    if url.scheme() != "https" && !allow_private {
        return Err(TargetError::PlainHttp);
    }
    let host = url.host_str().unwrap_or_default().to_owned();
    let addrs: Vec<IpAddr> = match url.host() {
        Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        _ if allow_private => return Ok(()),
        _ => {
            let port = url.port_or_known_default().unwrap_or(443);
            tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|_| TargetError::NotPublic(host.clone()))?
                .map(|a| a.ip())
                .collect()
        }
    };
    let literal = matches!(url.host(), Some(Host::Ipv4(_) | Host::Ipv6(_)));
    if addrs.is_empty() {
        return Err(TargetError::NotPublic(host));
    }
    if allow_private {
        return Ok(());
    }
    match addrs.into_iter().find_map(forbidden_range) {
        // The caller wrote the address: naming its range tells them nothing new.
        Some(range) if literal => Err(TargetError::Private { host, range }),
        // A name: which address it has, and what kind, stays inside.
        Some(_) => Err(TargetError::NotPublic(host)),
        None => Ok(()),
    }
}

/// Checks a URL whose host is an address (names are checked as they resolve).
pub fn check_literal(url: &Url, allow_private: bool) -> Result<(), TargetError> {
    let addr = match url.host() {
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
        _ => return Ok(()),
    };
    match forbidden_range(addr).filter(|_| !allow_private) {
        Some(range) => Err(TargetError::Private {
            host: url.host_str().unwrap_or_default().to_owned(),
            range,
        }),
        None => Ok(()),
    }
}

/// The HTTP client's resolver for deliveries: a name's forbidden addresses are dropped, and
/// a name with only forbidden ones fails to resolve, so a delivery never connects to one.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || forbidden_range(a.ip()).is_none())
                .collect();
            if found.is_empty() {
                let refused: Box<dyn std::error::Error + Send + Sync> =
                    format!("`{host}` has no address a webhook may reach").into();
                return Err(refused);
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// The resolver, shared.
pub fn resolver(allow_private: bool) -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver { allow_private })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_named() {
        for (ip, range) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("0.0.0.0", "unspecified"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("::1", "loopback"),
            ("fd12::1", "private (unique local)"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("fd00:ec2::254", "cloud metadata"),
            // IPv4-compatible, NAT64 and 6to4 forms mean their IPv4 address.
            ("::7f00:1", "loopback"),
            ("::a00:5", "private"),
            ("::808:808", "reserved (IPv4-compatible)"),
            ("64:ff9b::a00:5", "private"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b:1::5", "local-use NAT64"),
            ("2002:c0a8:101::1", "private"),
            ("2002:7f00:1::", "loopback"),
            ("fec0::1", "site-local"),
            ("2001:db8::1", "documentation"),
            ("2001::1", "IETF protocol assignments"),
            ("100::1", "discard-only"),
            ("ff02::1", "multicast"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("192.0.0.8", "IETF protocol assignments"),
            ("192.0.2.1", "documentation"),
            ("203.0.113.9", "documentation"),
            ("168.63.129.16", "cloud wire-server"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("250.1.1.1", "reserved"),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(forbidden_range(ip), Some(range), "{ip}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "198.20.0.1",
            "100.128.0.1",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "168.63.129.17",
        ] {
            assert_eq!(forbidden_range(public.parse().unwrap()), None, "{public}");
        }
    }

    #[tokio::test]
    async fn a_name_resolving_inward_is_never_connected_to() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let name = || reqwest::dns::Name::from_str("localhost").unwrap();
        let refused = GuardedResolver {
            allow_private: false,
        }
        .resolve(name())
        .await;
        assert!(refused.is_err());
        let allowed = GuardedResolver {
            allow_private: true,
        }
        .resolve(name())
        .await;
        assert!(allowed.unwrap().any(|a| a.ip().is_loopback()));
        let url = parse("https://[::1]:9/x").unwrap();
        assert!(check_literal(&url, false).is_err());
        assert!(check_literal(&url, true).is_ok());
        assert!(check_literal(&parse("http://example.com/").unwrap(), false).is_ok());
    }

    #[tokio::test]
    async fn plain_http_needs_the_operator() {
        let url = parse("http://93.184.216.34/hook").unwrap();
        assert_eq!(check(&url, false).await, Err(TargetError::PlainHttp));
        assert!(check(&url, true).await.is_ok());
        assert!(check(&parse("https://93.184.216.34/hook").unwrap(), false)
            .await
            .is_ok());
    }

    #[test]
    fn only_http_urls_without_credentials_parse() {
        assert!(parse("https://hooks.example.com/x?y=1").is_ok());
        assert_eq!(parse("ftp://example.com/"), Err(TargetError::NotHttp));
        assert_eq!(parse("/relative"), Err(TargetError::NotHttp));
        assert_eq!(
            parse("https://u:p@example.com/"),
            Err(TargetError::UserInfo)
        );
    }
}
