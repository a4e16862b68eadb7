//! The SSRF guard for every outbound call: only https (plain http only when configured for
//! tests), and never to loopback, private, link-local, unique-local, multicast, reserved,
//! documentation, translation (NAT64, 6to4, Teredo, IPv4-compatible) or cloud-metadata
//! addresses unless the host is on the configured allow list.
//!
//! A site is read with the `url` crate, the very parser the HTTP client uses (WHATWG host
//! parsing), so the guard judges the host the client will connect to: `127.1`, `2130706433`,
//! `0x7f000001` or `0` are IPv4 addresses to that parser, and the client never asks the
//! resolver about them. A numeric host written any other way than the parser writes it back is
//! refused outright, even when public: a ConnectWise site is never typed as a number. Host
//! names are checked again after DNS resolution, in the resolver the client connects through, so
//! a name that resolves to an internal address is refused too.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use url::{Host, Url};

/// Where outbound calls may go.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    /// Allow `http://` (for tests against a local mock; never in production).
    pub allow_http: bool,
    /// Hosts or IP addresses allowed even though they are internal. An entry matches only the
    /// host written exactly so (an IP in its canonical form), never another spelling of it.
    pub allowed_hosts: Vec<String>,
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The host as it was given.
    pub host: String,
    pub kind: RefusalKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusalKind {
    /// The address is in a range outbound calls must not reach (`loopback`, `private`, …).
    Class(&'static str),
    /// A numeric host in another spelling than the URL parser's own, with what it reads it as.
    NonCanonical(String),
    /// Not a plain `host[:port]`, or a name the URL parser reads as another name.
    Malformed,
}

impl Refusal {
    fn new(host: &str, kind: RefusalKind) -> Self {
        Self {
            host: host.to_owned(),
            kind,
        }
    }

    /// The refused address class, when that is the reason.
    pub fn class(&self) -> Option<&'static str> {
        match self.kind {
            RefusalKind::Class(class) => Some(class),
            _ => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = &self.host;
        match &self.kind {
            RefusalKind::Class(class) => write!(
                f,
                "`{host}` is a {class} address; outbound calls there are refused"
            ),
            RefusalKind::NonCanonical(read_as) => write!(
                f,
                "`{host}` is the IP address {read_as} written in a non-canonical numeric form; \
                 a ConnectWise site is never typed as a number, so it is refused"
            ),
            RefusalKind::Malformed => write!(
                f,
                "`{host}` is not a plain host name and port as the HTTP client reads it; \
                 outbound calls there are refused"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// The class of an address outbound calls must not reach, if it is one.
pub fn forbidden_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

/// `ip` lies in `net/len`.
fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX << (32 - len);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], len: u32) -> bool {
    let mask = u128::MAX << (128 - len);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let within = |net, len| in_v4(ip, net, len);
    Some(if within([127, 0, 0, 0], 8) {
        "loopback"
    } else if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        "cloud metadata"
    } else if within([0, 0, 0, 0], 8) {
        "unspecified"
    } else if within([10, 0, 0, 0], 8)
        || within([172, 16, 0, 0], 12)
        || within([192, 168, 0, 0], 16)
        || within([100, 64, 0, 0], 10)
    {
        "private"
    } else if within([169, 254, 0, 0], 16) {
        "link-local"
    } else if within([192, 0, 2, 0], 24) || within([198, 51, 100, 0], 24) || within([203, 0, 113, 0], 24) {
        "documentation"
    } else if within([198, 18, 0, 0], 15) {
        "benchmarking"
    } else if within([224, 0, 0, 0], 4) {
        "multicast"
    } else if ip == Ipv4Addr::BROADCAST {
        "broadcast"
    } else if within([192, 0, 0, 0], 24) || within([192, 88, 99, 0], 24) || within([240, 0, 0, 0], 4) {
        // IETF protocol assignments, the retired 6to4 relay anycast, and the future-use block.
        "reserved"
    } else {
        return None;
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    // `::ffff:a.b.c.d` reaches the IPv4 address itself.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_class(v4);
    }
    let within = |net, len| in_v6(ip, net, len);
    Some(if ip.is_loopback() {
        "loopback"
    } else if ip.is_unspecified() {
        "unspecified"
    } else if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        "cloud metadata"
    } else if within([0; 8], 96) {
        "IPv4-compatible"
    } else if within([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) || within([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48) {
        // A NAT64 gateway turns these into any IPv4 address, internal ones included.
        "NAT64"
    } else if within([0x2001, 0, 0, 0, 0, 0, 0, 0], 32) {
        "Teredo"
    } else if within([0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        "6to4"
    } else if within([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32) || within([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20) {
        "documentation"
    } else if within([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7) {
        "unique-local"
    } else if within([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10) {
        "link-local"
    } else if within([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10) {
        "site-local"
    } else if ip.is_multicast() {
        "multicast"
    } else if !within([0x2000, 0, 0, 0, 0, 0, 0, 0], 3) || within([0x2001, 0, 0, 0, 0, 0, 0, 0], 23) {
        // Only global unicast (2000::/3) is routable on the internet; 2001::/23 holds protocol
        // assignments (ORCHID, AMT, …), and the rest (::/8 translation forms, 100::/64
        // discard, …) is reserved.
        "reserved"
    } else {
        return None;
    })
}

/// The host part of a `host[:port]` site, as typed.
fn typed_host(site: &str) -> &str {
    if site.starts_with('[') {
        return site.find(']').map_or(site, |end| &site[..=end]);
    }
    site.rsplit_once(':').map_or(site, |(host, _)| host)
}

impl OutboundPolicy {
    fn allows_host(&self, host: &str) -> bool {
        self.allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }

    /// The scheme outbound calls use.
    pub fn scheme(&self) -> &'static str {
        if self.allow_http { "http" } else { "https" }
    }

    /// Checks an address `host` is or resolved to.
    pub fn check(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        if self.allows_host(host) || self.allows_host(&ip.to_string()) {
            return Ok(());
        }
        match forbidden_class(ip) {
            Some(class) => Err(Refusal::new(host, RefusalKind::Class(class))),
            None => Ok(()),
        }
    }

    /// Checks a host name before any connection: IP literals directly, and the special name
    /// `localhost`, which must never be looked up. The resolver calls this for every name.
    pub fn precheck(&self, host: &str) -> Result<(), Refusal> {
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            return self.check(host, ip);
        }
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if (lower == "localhost" || lower.ends_with(".localhost")) && !self.allows_host(host) {
            return Err(Refusal::new(host, RefusalKind::Class("loopback")));
        }
        Ok(())
    }

    /// The origin (`scheme://host[:port]/`) of a `host[:port]` site, read exactly as the HTTP
    /// client will read it, or why no request may go there. Every request URL is built from the
    /// URL this returns, so what was checked is what is connected to.
    pub fn origin(&self, site: &str) -> Result<Url, Refusal> {
        let malformed = || Refusal::new(site, RefusalKind::Malformed);
        let url = Url::parse(&format!("{}://{site}/", self.scheme())).map_err(|_| malformed())?;
        if url.path() != "/"
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(malformed());
        }
        let (Some(host), Some(parsed)) = (url.host(), url.host_str()) else {
            return Err(malformed());
        };
        let typed = typed_host(site);
        // The parser rewrites what it reads: numbers into dotted quads, IDNA and percent
        // escapes into names. Only a host it reads back unchanged is judged by what it says.
        let unchanged = parsed.eq_ignore_ascii_case(typed);
        match host {
            Host::Ipv4(ip) if unchanged => self.check(typed, IpAddr::V4(ip))?,
            Host::Ipv6(ip) if unchanged => self.check(typed, IpAddr::V6(ip))?,
            Host::Ipv4(_) | Host::Ipv6(_) => {
                return Err(Refusal::new(typed, RefusalKind::NonCanonical(parsed.to_owned())));
            }
            Host::Domain(_) if unchanged => self.precheck(parsed)?,
            Host::Domain(_) => return Err(malformed()),
        }
        Ok(url)
    }
}

/// The resolver the outbound HTTP client connects through: it resolves, then refuses the whole
/// name if any of its addresses is forbidden.
pub struct GuardedResolver {
    pub policy: Arc<OutboundPolicy>,
}

/// DNS could not resolve the name (the host; the resolver's own error goes to the log).
#[derive(Debug)]
pub struct DnsFailure(pub String);

impl fmt::Display for DnsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot resolve `{}`", self.0)
    }
}

impl DnsFailure {
    /// Logs the resolver's error, which says whether the name does not exist or the server's
    /// DNS could not be asked, for whoever runs the server.
    fn logged(host: &str, error: &dyn fmt::Display) -> Self {
        tracing::warn!(host, error = %error, "DNS lookup of a ConnectWise site failed");
        Self(host.to_owned())
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
                .map_err(|error| DnsFailure::logged(&host, &error))?
                .collect();
            if addrs.is_empty() {
                return Err(DnsFailure::logged(&host, &"no addresses").into());
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
            ("127.255.0.9", "loopback"),
            ("::1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("100.127.255.255", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("100.100.100.200", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("fe80::1", "link-local"),
            ("fc00::1", "unique-local"),
            ("fd00:ec2::254", "cloud metadata"),
            ("fec0::1", "site-local"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("192.0.0.8", "reserved"),
            ("192.88.99.1", "reserved"),
            ("240.0.0.1", "reserved"),
            ("254.1.2.3", "reserved"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.9", "documentation"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.254", "benchmarking"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::127.0.0.1", "IPv4-compatible"),
            ("::8.8.8.8", "IPv4-compatible"),
            ("::ffff:0:7f00:1", "reserved"),
            ("64:ff9b::7f00:1", "NAT64"),
            ("64:ff9b::808:808", "NAT64"),
            ("64:ff9b:1::a00:1", "NAT64"),
            ("2002:7f00:1::1", "6to4"),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),
            ("2001:10::1", "reserved"),
            ("100::1", "reserved"),
            ("4000::1", "reserved"),
        ] {
            assert_eq!(refused(ip), Some(class), "{ip}");
        }
        for public in [
            "8.8.8.8",
            "52.1.2.3",
            "100.128.0.1",
            "198.20.0.1",
            "223.255.255.254",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(refused(public), None, "{public}");
        }
    }

    fn origin_refusal(policy: &OutboundPolicy, site: &str) -> RefusalKind {
        policy.origin(site).unwrap_err().kind
    }

    #[test]
    fn numeric_hosts_are_read_as_the_url_parser_reads_them_and_refused_unless_canonical() {
        let policy = OutboundPolicy::default();
        for (site, read_as) in [
            ("2130706433:8080", "127.0.0.1"),
            ("127.1:8080", "127.0.0.1"),
            ("127.0.1", "127.0.0.1"),
            ("0x7f000001:8080", "127.0.0.1"),
            ("0x7f.0.0.1", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("0", "0.0.0.0"),
            ("0:8080", "0.0.0.0"),
            ("127.0.0.1.", "127.0.0.1"),
            ("0127.0.0.1", "87.0.0.1"),
            ("134744072", "8.8.8.8"),
            ("8.8.8.8.", "8.8.8.8"),
            ("%31%32%37.0.0.1", "127.0.0.1"),
            ("１２７.０.０.１", "127.0.0.1"),
            ("[::ffff:127.0.0.1]:8080", "[::ffff:7f00:1]"),
            ("[0:0:0:0:0:0:0:1]", "[::1]"),
            ("[::FFFF:7F00:0001]", "[::ffff:7f00:1]"),
            ("[64:ff9b::127.0.0.1]", "[64:ff9b::7f00:1]"),
        ] {
            assert_eq!(
                origin_refusal(&policy, site),
                RefusalKind::NonCanonical(read_as.into()),
                "{site}"
            );
        }
    }

    #[test]
    fn canonical_hosts_are_judged_by_their_address() {
        let policy = OutboundPolicy::default();
        for (site, class) in [
            ("127.0.0.1:8080", "loopback"),
            ("[::1]", "loopback"),
            ("[::ffff:7f00:1]", "loopback"),
            ("[::7f00:1]", "IPv4-compatible"),
            ("[64:ff9b::7f00:1]", "NAT64"),
            ("[2002:a00:1::1]", "6to4"),
            ("198.18.0.1", "benchmarking"),
            ("240.0.0.1", "reserved"),
            ("localhost:8080", "loopback"),
            ("LocalHost.", "loopback"),
            ("api.localhost", "loopback"),
        ] {
            assert_eq!(origin_refusal(&policy, site), RefusalKind::Class(class), "{site}");
        }
        for (site, origin) in [
            ("na.myconnectwise.net", "https://na.myconnectwise.net/"),
            ("cw.example.com:8443", "https://cw.example.com:8443/"),
            ("8.8.8.8", "https://8.8.8.8/"),
            ("[2606:4700::1111]", "https://[2606:4700::1111]/"),
        ] {
            assert_eq!(policy.origin(site).unwrap().as_str(), origin, "{site}");
        }
    }

    #[test]
    fn anything_but_a_plain_host_and_port_is_malformed() {
        let policy = OutboundPolicy::default();
        for site in [
            "",
            "user@na.myconnectwise.net",
            "na.myconnectwise.net/path",
            "na.myconnectwise.net?x",
            "na.myconnectwise.net#x",
            "na.myconnectwise.net:99999",
            "bücher.example",
            "xn--bcher-kva.example\\x",
            "a b",
        ] {
            assert_eq!(origin_refusal(&policy, site), RefusalKind::Malformed, "{site}");
        }
    }

    #[test]
    fn the_allow_list_opens_the_exact_host_only() {
        let policy = OutboundPolicy {
            allow_http: true,
            allowed_hosts: vec!["127.0.0.1".into()],
        };
        assert_eq!(
            policy.origin("127.0.0.1:9000").unwrap().as_str(),
            "http://127.0.0.1:9000/"
        );
        assert!(policy.precheck("127.0.0.1").is_ok());
        for other_spelling in [
            "127.1:9000",
            "2130706433:9000",
            "0x7f000001:9000",
            "127.0.0.1.:9000",
        ] {
            assert!(
                matches!(
                    origin_refusal(&policy, other_spelling),
                    RefusalKind::NonCanonical(_)
                ),
                "{other_spelling}"
            );
        }
        assert_eq!(
            origin_refusal(&policy, "[::ffff:7f00:1]:9000"),
            RefusalKind::Class("loopback")
        );
        assert_eq!(policy.precheck("10.0.0.1").unwrap_err().class(), Some("private"));
        assert_eq!(
            policy.precheck("localhost").unwrap_err().class(),
            Some("loopback")
        );
        assert!(policy.precheck("na.myconnectwise.net").is_ok());
        assert_eq!(
            OutboundPolicy::default()
                .precheck("127.0.0.1")
                .unwrap_err()
                .class(),
            Some("loopback")
        );
    }

    #[test]
    fn the_guard_parses_with_the_http_clients_own_url_type() {
        // `reqwest::Url` is `url::Url`: one parser for the guard and the client, by construction.
        let parsed: Url = reqwest::Url::parse("http://0x7f000001:1/").unwrap();
        assert_eq!(parsed.host(), Some(Host::Ipv4(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn refusals_say_what_the_host_was_read_as() {
        let message = OutboundPolicy::default()
            .origin("2130706433:8080")
            .unwrap_err()
            .to_string();
        assert!(message.contains("`2130706433`"), "{message}");
        assert!(message.contains("127.0.0.1"), "{message}");
        assert!(message.contains("non-canonical"), "{message}");
    }
}
