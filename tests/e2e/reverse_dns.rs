//! Reverse DNS for the `New SMTP ICID` line: the resolver's forward-confirmed names against a
//! real DNS server on loopback, and the relay asking only when told to.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use postern::config::Config;
use postern::outbound::Resolver;
use postern::testing::dns::TestZone;
use postern_tests::client::RawClient;
use postern_tests::relay::TestRelay;

fn resolver(nameserver: std::net::SocketAddr) -> Resolver {
    let config = Config::from_toml(&format!(
        "[dns]\nnameservers = [\"{nameserver}\"]\ntimeout = \"1s\"\n"
    ))
    .unwrap();
    Resolver::new(&config.dns).unwrap()
}

// 192.0.2.0/24 is TEST-NET-1: only a name in the queries here, never an address traffic goes to.
#[tokio::test]
async fn names_are_forward_confirmed() {
    let dns = TestZone::new("2.0.192.in-addr.arpa")
        .ptr("7.2.0.192.in-addr.arpa", "client.2.0.192.in-addr.arpa")
        .v4("client.2.0.192.in-addr.arpa", Ipv4Addr::new(192, 0, 2, 7))
        .ptr("8.2.0.192.in-addr.arpa", "liar.2.0.192.in-addr.arpa")
        .v4("liar.2.0.192.in-addr.arpa", Ipv4Addr::new(192, 0, 2, 99))
        .serve()
        .await;
    let r = resolver(dns.addr);
    let ip = |last| IpAddr::V4(Ipv4Addr::new(192, 0, 2, last));
    assert_eq!(
        r.reverse_name(ip(7)).await,
        Some(("client.2.0.192.in-addr.arpa".into(), true))
    );
    assert_eq!(
        r.reverse_name(ip(8)).await,
        Some(("liar.2.0.192.in-addr.arpa".into(), false))
    );
    assert_eq!(r.reverse_name(ip(9)).await, None, "no PTR record");
}

#[tokio::test]
async fn a_dead_name_server_gives_no_name_within_the_timeout() {
    // A UDP socket nobody reads: every query goes unanswered.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = resolver(dead.local_addr().unwrap());
    let started = Instant::now();
    assert_eq!(
        r.reverse_name(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)))
            .await,
        None
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_relay_logs_the_clients_name_when_reverse_dns_is_on() {
    // Named name servers keep the machine's hosts file out of it.
    let dns = TestZone::new("test").serve().await;
    let relay = TestRelay::builder()
        .set("smtp", "reverse_dns = true")
        .toml(&format!("[dns]\nnameservers = [\"{}\"]\n", dns.addr))
        .start()
        .await;
    let mut c = RawClient::connect(relay.addr).await;
    c.command("QUIT").await;
    // Loopback addresses are named by the resolver itself (RFC 6761), never asked of a server.
    let line = relay.wait_for_log("New SMTP ICID 1 ").await;
    assert!(
        line.ends_with("address 127.0.0.1 reverse dns host localhost verified yes"),
        "{line}"
    );
    relay.stop().await;
}
