//! Which address a request comes from, for throttling.
//!
//! The peer address of the connection, unless that peer is a configured trusted proxy: then
//! `X-Forwarded-For` is read from the right, skipping trusted proxies, and the first other
//! address is the client. Entries left of it were written by the client itself and are never
//! believed, so a client cannot choose its own address by sending the header.

use crate::config::IpRange;
use actix_web::HttpRequest;
use std::net::IpAddr;

pub fn client_address(req: &HttpRequest, trusted_proxies: &[IpRange]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|range| range.contains(ip));
    if !trusted(peer) {
        return Some(peer);
    }
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted(client) => client = ip,
            _ => break,
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn ranges(list: &[&str]) -> Vec<IpRange> {
        list.iter().map(|r| IpRange::parse(r).unwrap()).collect()
    }

    fn from(peer: &str, forwarded: Option<&str>) -> TestRequest {
        let request = TestRequest::default().peer_addr(format!("{peer}:5000").parse().unwrap());
        match forwarded {
            Some(header) => request.insert_header(("x-forwarded-for", header)),
            None => request,
        }
    }

    fn address(request: TestRequest, trusted: &[&str]) -> String {
        client_address(&request.to_http_request(), &ranges(trusted))
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_header_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        assert_eq!(
            address(from("203.0.113.7", Some("198.51.100.1")), &[]),
            "203.0.113.7"
        );
        assert_eq!(
            address(from("203.0.113.7", Some("198.51.100.1")), &["10.0.0.0/8"]),
            "203.0.113.7"
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(
            address(from("10.0.0.2", Some("198.51.100.1")), &trusted),
            "198.51.100.1"
        );
        // What the client wrote itself (left of the real hop) is not believed.
        assert_eq!(
            address(
                from("10.0.0.2", Some("1.2.3.4, 198.51.100.1, 10.0.0.9")),
                &trusted
            ),
            "198.51.100.1"
        );
        // A trusted proxy without the header, or with garbage, is the client as far as we know.
        assert_eq!(address(from("10.0.0.2", None), &trusted), "10.0.0.2");
        assert_eq!(address(from("10.0.0.2", Some("nonsense")), &trusted), "10.0.0.2");
    }
}
