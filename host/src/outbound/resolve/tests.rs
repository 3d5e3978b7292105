//! The resolver against an in-process DNS server on loopback.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::*;
use crate::config::DomainPattern;
use crate::testing::dns::{TestDns, TestZone};

const MX_PORT: u16 = 2525;

async fn zone() -> TestDns {
    TestZone::new("test")
        .mx("mail.test", 20, "mx2.test")
        .mx("mail.test", 10, "mx1.test")
        .v4("mx1.test", Ipv4Addr::new(127, 0, 0, 11))
        .v6("mx1.test", Ipv6Addr::LOCALHOST)
        .v4("mx2.test", Ipv4Addr::new(127, 0, 0, 12))
        .v4("nomx.test", Ipv4Addr::new(127, 0, 0, 13))
        .mx("null.test", 0, ".")
        .mx("dangling.test", 10, "missing-host.test")
        .v4("relay.test", Ipv4Addr::new(127, 0, 0, 14))
        .serve()
        .await
}

fn resolver(dns: &TestDns) -> Resolver {
    Resolver::new(&DnsConfig {
        nameservers: vec![dns.addr],
        timeout: Duration::from_secs(2),
        mx_port: MX_PORT,
        mx_tls: TlsMode::May,
    })
    .unwrap()
}

fn addrs(targets: &[Target]) -> Vec<String> {
    targets
        .iter()
        .map(|t| format!("{} {}", t.host, t.addr))
        .collect()
}

#[tokio::test]
async fn mx_records_by_preference() {
    let dns = zone().await;
    let targets = resolver(&dns).resolve("mail.test", &[]).await.unwrap();
    let hosts: Vec<&str> = targets.iter().map(|t| t.host.as_str()).collect();
    assert_eq!(hosts, vec!["mx1.test", "mx1.test", "mx2.test"]);
    let mut mx1 = addrs(&targets[..2]);
    mx1.sort();
    assert_eq!(mx1, vec!["mx1.test 127.0.0.11:2525", "mx1.test [::1]:2525"]);
    assert_eq!(addrs(&targets[2..]), vec!["mx2.test 127.0.0.12:2525"]);
    assert!(targets.iter().all(|t| t.tls == TlsMode::May));
}

#[tokio::test]
async fn no_mx_falls_back_to_the_address() {
    let dns = zone().await;
    let targets = resolver(&dns).resolve("nomx.test", &[]).await.unwrap();
    assert_eq!(addrs(&targets), vec!["nomx.test 127.0.0.13:2525"]);
}

#[tokio::test]
async fn a_missing_domain_is_nxdomain() {
    let dns = zone().await;
    let err = resolver(&dns).resolve("tdc.test", &[]).await.unwrap_err();
    assert_eq!(
        err,
        DnsError::NxDomain {
            domain: "tdc.test".into(),
            rtype: "MX"
        }
    );
    assert!(err.is_permanent());
    assert_eq!(err.log_line(), "DNS Error tdc.test MX - NXDomain");
    assert_eq!(
        err.hard_bounce_text().unwrap(),
        "Hard bounced - 5.1.2 - Bad destination host ('000', ['DNS Hard Error looking up tdc.test (MX): NXDomain'])"
    );
}

#[tokio::test]
async fn a_null_mx_refuses_mail() {
    let dns = zone().await;
    let err = resolver(&dns).resolve("null.test", &[]).await.unwrap_err();
    assert_eq!(
        err,
        DnsError::NullMx {
            domain: "null.test".into()
        }
    );
    assert!(err.is_permanent());
}

#[tokio::test]
async fn an_mx_host_without_address_is_temporary() {
    let dns = zone().await;
    let err = resolver(&dns)
        .resolve("dangling.test", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::Temporary { .. }), "{err:?}");
    assert!(!err.is_permanent());
}

#[tokio::test]
async fn a_refusing_server_is_temporary() {
    let dns = zone().await;
    // The server is authoritative for `test.` only, and refuses anything else.
    let err = resolver(&dns)
        .resolve("example.org", &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DnsError::Temporary { rtype: "MX", .. }),
        "{err:?}"
    );
    assert!(
        err.log_line().starts_with("DNS Error example.org MX - "),
        "{}",
        err.log_line()
    );
}

#[tokio::test]
async fn a_route_wins_over_mx() {
    let dns = zone().await;
    let routes = vec![
        Route {
            domain: DomainPattern::parse("mail.test").unwrap(),
            host: "relay.test".into(),
            port: 26,
            tls: TlsMode::Required,
        },
        Route {
            domain: DomainPattern::parse(".ip.test").unwrap(),
            host: "[::1]".into(),
            port: 27,
            tls: TlsMode::None,
        },
    ];
    let resolver = resolver(&dns);
    let targets = resolver.resolve("mail.test", &routes).await.unwrap();
    assert_eq!(
        targets,
        vec![Target {
            host: "relay.test".into(),
            addr: "127.0.0.14:26".parse().unwrap(),
            tls: TlsMode::Required
        }]
    );
    let targets = resolver.resolve("a.ip.test", &routes).await.unwrap();
    assert_eq!(
        targets,
        vec![Target {
            host: "::1".into(),
            addr: "[::1]:27".parse().unwrap(),
            tls: TlsMode::None
        }]
    );
}

#[tokio::test]
async fn the_most_specific_route_wins_whatever_its_place() {
    let dns = zone().await;
    let route = |domain: &str, port: u16| Route {
        domain: DomainPattern::parse(domain).unwrap(),
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
    };
    let routes = vec![
        route("*", 1),
        route(".test", 2),
        route(".b.test", 3),
        route("a.b.test", 4),
        route("*", 5),
    ];
    let resolver = resolver(&dns);
    for (domain, port) in [
        ("a.b.test", 4),
        ("x.b.test", 3),
        ("deep.x.b.test", 3),
        ("b.test", 2),
        ("other.test", 2),
        ("example.org", 1),
    ] {
        let targets = resolver.resolve(domain, &routes).await.unwrap();
        assert_eq!(targets[0].addr.port(), port, "{domain}");
    }
}

#[tokio::test]
async fn domain_literals_need_no_dns() {
    let dns = zone().await;
    let resolver = resolver(&dns);
    let targets = resolver.resolve("[127.0.0.1]", &[]).await.unwrap();
    assert_eq!(addrs(&targets), vec!["127.0.0.1 127.0.0.1:2525"]);
    let targets = resolver.resolve("[IPv6:::1]", &[]).await.unwrap();
    assert_eq!(addrs(&targets), vec!["::1 [::1]:2525"]);
}

#[test]
fn parses_domain_literals() {
    assert_eq!(
        domain_literal("[192.0.2.1]"),
        Some("192.0.2.1".parse().unwrap())
    );
    assert_eq!(
        domain_literal("[ipv6:2001:db8::1]"),
        Some("2001:db8::1".parse().unwrap())
    );
    assert_eq!(domain_literal("[::1]"), None);
    assert_eq!(domain_literal("example.com"), None);
}
