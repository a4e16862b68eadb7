//! The SSRF guard for every outbound call: only https (plain http only when configured for
//! tests), and never to loopback, private, link-local, unique-local, multicast, unspecified or
//! cloud-metadata addresses unless the host is on the configured allow list. Host names are
//! checked after DNS resolution, in the resolver the HTTP client connects through, so a name
//! that resolves to an internal address is refused too.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Where outbound calls may go.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    /// Allow `http://` (for tests against a local mock; never in production).
    pub allow_http: bool,
    /// Hosts or IP addresses allowed even though they are internal.
    pub allowed_hosts: Vec<String>,
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub host: String,
    pub class: &'static str,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is a {} address; outbound calls there are refused",
            self.host, self.class
        )
    }
}

impl std::error::Error for Refusal {}

/// The class of an address outbound calls must not reach, if it is one.
pub fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_class(v4),
            None => v6_class(v6),
        },
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("cloud metadata")
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("multicast")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else {
        None
    }
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some("cloud metadata")
    } else if first & 0xfe00 == 0xfc00 {
        Some("unique-local")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else {
        None
    }
}

impl OutboundPolicy {
    fn allows_host(&self, host: &str) -> bool {
        self.allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }

    /// Checks an address `host` resolved to.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        if self.allows_host(host) || self.allows_host(&ip.to_string()) {
            return Ok(());
        }
        match forbidden_class(ip) {
            Some(class) => Err(Refusal {
                host: host.to_owned(),
                class,
            }),
            None => Ok(()),
        }
    }

    /// Checks a host before any connection: IP literals directly, and the special name
    /// `localhost`, which must never be looked up.
    pub fn precheck(&self, host: &str) -> Result<(), Refusal> {
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            return self.check(host, ip);
        }
        let lower = host.to_ascii_lowercase();
        if (lower == "localhost" || lower.ends_with(".localhost")) && !self.allows_host(host) {
            return Err(Refusal {
                host: host.to_owned(),
                class: "loopback",
            });
        }
        Ok(())
    }
}

/// The resolver the outbound HTTP client connects through: it resolves, then refuses the whole
/// name if any of its addresses is forbidden.
pub struct GuardedResolver {
    pub policy: Arc<OutboundPolicy>,
}

/// DNS could not resolve the name.
#[derive(Debug)]
pub struct DnsFailure(pub String);

impl fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot resolve `{}`", self.0)
    }
}

impl std::error::Error for DnsFailure {}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            policy.precheck(&host)?;
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| DnsFailure(host.clone()))?
                .collect();
            if addrs.is_empty() {
                return Err(DnsFailure(host).into());
            }
            for addr in &addrs {
                policy.check(&host, addr.ip())?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> Option<&'static str> {
        forbidden_class(ip.parse().unwrap())
    }

    #[test]
    fn every_internal_address_class_is_refused() {
        for (ip, class) in [
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique-local"),
            ("fd00:ec2::254", "cloud metadata"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("::ffff:10.0.0.1", "private"),
        ] {
            assert_eq!(refused(ip), Some(class), "{ip}");
        }
        for public in ["8.8.8.8", "52.1.2.3", "2606:4700::1111"] {
            assert_eq!(refused(public), None, "{public}");
        }
    }

    #[test]
    fn the_allow_list_opens_named_hosts_only() {
        let policy = OutboundPolicy {
            allow_http: true,
            allowed_hosts: vec!["127.0.0.1".into()],
        };
        assert!(policy.precheck("127.0.0.1").is_ok());
        assert_eq!(policy.precheck("10.0.0.1").unwrap_err().class, "private");
        assert_eq!(policy.precheck("localhost").unwrap_err().class, "loopback");
        assert!(policy.precheck("na.myconnectwise.net").is_ok());
        assert_eq!(
            OutboundPolicy::default().precheck("127.0.0.1").unwrap_err().class,
            "loopback"
        );
    }
}
