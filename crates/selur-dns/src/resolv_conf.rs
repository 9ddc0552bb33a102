//! The node's resolvers, read from `/etc/resolv.conf` text.

use std::net::{IpAddr, SocketAddr};

/// The `nameserver` lines of resolv.conf text as socket addresses on port
/// 53, in file order, duplicates dropped.
///
/// Both families are kept (the node's resolver may be IPv4 even on an
/// IPv6-only cluster), and so are loopback addresses such as
/// systemd-resolved's `127.0.0.53`: they are the node's resolver, not this
/// server, which listens on the cluster DNS address. IPv6 zone ids
/// (`fe80::1%eth0`) are dropped with the address, since a scope cannot be
/// carried in a `SocketAddr` parsed from text here; lines that do not parse
/// are skipped.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut upstreams = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(address) = words.next() else {
            continue;
        };
        let address = address.trim_start_matches('[').trim_end_matches(']');
        let Ok(ip) = address.parse::<IpAddr>() else {
            continue;
        };
        let upstream = SocketAddr::new(ip, 53);
        if !upstreams.contains(&upstream) {
            upstreams.push(upstream);
        }
    }
    upstreams
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_of_both_families_in_order_on_port_53() {
        let text = "# generated\nsearch example.org\nnameserver 2001:db8::53\n\
                    nameserver 192.0.2.1 # office\n  nameserver\t127.0.0.53\n\
                    options edns0\nnameserver 2001:db8::53\n";
        let got = upstreams_from_resolv_conf(text);
        let want: Vec<SocketAddr> = vec![
            "[2001:db8::53]:53".parse().unwrap(),
            "192.0.2.1:53".parse().unwrap(),
            "127.0.0.53:53".parse().unwrap(),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn comments_bad_addresses_and_zone_ids_are_skipped() {
        let text = "#nameserver 192.0.2.9\n;nameserver 192.0.2.8\nnameserver bogus\n\
                    nameserver fe80::1%eth0\nnameserver\nnameserver [::1]\n";
        let got = upstreams_from_resolv_conf(text);
        assert_eq!(got, vec!["[::1]:53".parse::<SocketAddr>().unwrap()]);
    }
}
