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
    #[error("url host `{0}` does not resolve")]
    Unresolvable(String),
    #[error("url host `{host}` resolves to {addr}, a {range} address; webhooks go to public addresses (the operator may allow private ones with webhooks.allow_private_targets)")]
    Private {
        host: String,
        addr: IpAddr,
        range: &'static str,
    },
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

/// The range a forbidden address is in, or `None` for a public one.
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_range(v4),
            None => v6_range(v6),
        },
    }
}

fn v4_range(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some("cloud metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared (carrier-grade NAT)")
    } else if ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn v6_range(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("cloud metadata")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xfe00 == 0xfc00 {
        Some("private (unique local)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("reserved")
    } else {
        None
    }
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
                .map_err(|_| TargetError::Unresolvable(host.clone()))?
                .map(|a| a.ip())
                .collect()
        }
    };
    if addrs.is_empty() {
        return Err(TargetError::Unresolvable(host));
    }
    if allow_private {
        return Ok(());
    }
    match addrs
        .into_iter()
        .find_map(|addr| forbidden_range(addr).map(|range| (addr, range)))
    {
        Some((addr, range)) => Err(TargetError::Private { host, addr, range }),
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
            addr,
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
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(forbidden_range(ip), Some(range), "{ip}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
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
