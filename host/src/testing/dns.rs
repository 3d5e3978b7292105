//! A loopback DNS server (hickory-server, UDP and TCP on one random port) serving one in-memory
//! zone, for tests of MX delivery, resolution and reverse DNS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, AAAA, MX, PTR, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use tokio::net::{TcpListener, UdpSocket};

/// Records of one zone, built up before [`TestZone::serve`].
pub struct TestZone {
    origin: Name,
    records: Vec<Record>,
}

impl TestZone {
    /// A zone (`test.` say) with its SOA.
    pub fn new(origin: &str) -> TestZone {
        let origin = name(origin);
        let soa = SOA::new(
            name(&format!("ns.{origin}")),
            name(&format!("admin.{origin}")),
            1,
            3600,
            600,
            86400,
            60,
        );
        TestZone {
            records: vec![Record::from_rdata(origin.clone(), 60, RData::SOA(soa))],
            origin,
        }
    }

    pub fn mx(mut self, owner: &str, preference: u16, exchange: &str) -> TestZone {
        self.records.push(Record::from_rdata(
            name(owner),
            60,
            RData::MX(MX::new(preference, name(exchange))),
        ));
        self
    }

    pub fn addr(mut self, owner: &str, ip: IpAddr) -> TestZone {
        let rdata = match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        self.records
            .push(Record::from_rdata(name(owner), 60, rdata));
        self
    }

    pub fn ptr(mut self, owner: &str, target: &str) -> TestZone {
        self.records.push(Record::from_rdata(
            name(owner),
            60,
            RData::PTR(PTR(name(target))),
        ));
        self
    }

    pub fn v4(self, owner: &str, ip: Ipv4Addr) -> TestZone {
        self.addr(owner, IpAddr::V4(ip))
    }

    pub fn v6(self, owner: &str, ip: Ipv6Addr) -> TestZone {
        self.addr(owner, IpAddr::V6(ip))
    }

    /// Serves the zone on 127.0.0.1, UDP and TCP on the same port, until the handle is dropped.
    pub async fn serve(self) -> TestDns {
        let mut handler = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            self.origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        for record in self.records {
            assert!(handler.upsert_mut(record, 1), "record rejected");
        }
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::new(&self.origin), vec![Arc::new(handler)]);
        // UDP first, then TCP on the same port; retry if another test holds the TCP port.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
            let port = udp.local_addr().unwrap().port();
            if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let mut server = Server::new(catalog);
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 4096);
        TestDns {
            addr,
            _server: server,
        }
    }
}

pub struct TestDns {
    pub addr: SocketAddr,
    _server: Server<Catalog>,
}

fn name(text: &str) -> Name {
    let absolute = if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    };
    Name::from_str(&absolute).expect("valid name")
}
