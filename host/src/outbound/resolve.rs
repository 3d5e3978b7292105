//! Where mail for a domain goes: the route table first, then MX records (RFC 5321 §5.1) through
//! hickory-resolver, each answer turned into [`Target`]s the queue hands to [`super::client`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;

use crate::config::{DnsConfig, Route, TlsMode};

/// Most targets one resolution yields; enough for any sane MX set with dual-stack hosts.
pub const MAX_TARGETS: usize = 32;

/// One address to try, in order of preference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The host name (or IP text) we connect for; `required` TLS verifies the certificate
    /// against it.
    pub host: String,
    pub addr: SocketAddr,
    pub tls: TlsMode,
}

/// Why a domain could not be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// The name does not exist: a hard bounce (5.1.2 bad destination host).
    #[error("DNS Hard Error looking up {domain} ({rtype}): NXDomain")]
    NxDomain { domain: String, rtype: &'static str },
    /// The domain exists but has neither MX nor address records: nothing can ever be delivered.
    #[error("DNS Hard Error looking up {domain} (A): no MX and no address records")]
    NoAddress { domain: String },
    /// SERVFAIL, REFUSED, a timeout, an unreachable server...: try again later.
    #[error("DNS Temporary Failure looking up {domain} ({rtype}): {detail}")]
    Temporary {
        domain: String,
        rtype: &'static str,
        detail: String,
    },
    /// RFC 7505: the domain says it accepts no mail.
    #[error("domain {domain} publishes a null MX: it accepts no mail")]
    NullMx { domain: String },
}

impl DnsError {
    /// Whether retrying can never help: the recipients bounce at once.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, DnsError::Temporary { .. })
    }

    /// The mail log line, e.g. `DNS Error tdc.example MX - NXDomain`.
    pub fn log_line(&self) -> String {
        match self {
            DnsError::NxDomain { domain, rtype } => {
                format!("DNS Error {domain} {rtype} - NXDomain")
            }
            DnsError::NoAddress { domain } => format!("DNS Error {domain} A - no address records"),
            DnsError::Temporary {
                domain,
                rtype,
                detail,
            } => format!("DNS Error {domain} {rtype} - {detail}"),
            DnsError::NullMx { domain } => format!("DNS Error {domain} MX - null MX"),
        }
    }

    /// The enhanced status code a bounce for this error carries.
    pub fn enhanced_code(&self) -> (u8, u16, u16) {
        match self {
            DnsError::NxDomain { .. } | DnsError::NoAddress { .. } => (5, 1, 2),
            DnsError::NullMx { .. } => (5, 1, 10),
            DnsError::Temporary { .. } => (4, 4, 3),
        }
    }

    /// For a permanent error, the gateway's hard bounce text, e.g.
    /// `Hard bounced - 5.1.2 - Bad destination host ('000', ['DNS Hard Error looking up
    /// tdc.example (MX): NXDomain'])`.
    pub fn hard_bounce_text(&self) -> Option<String> {
        let (class, subject, detail) = self.enhanced_code();
        let what = match self {
            DnsError::Temporary { .. } => return None,
            DnsError::NullMx { .. } => "Domain does not accept mail",
            DnsError::NxDomain { .. } | DnsError::NoAddress { .. } => "Bad destination host",
        };
        Some(format!(
            "Hard bounced - {class}.{subject}.{detail} - {what} ('000', ['{self}'])"
        ))
    }
}

/// Resolves destination domains. Cheap to clone; answers are cached by hickory.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    mx_port: u16,
    mx_tls: TlsMode,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("mx_port", &self.mx_port)
            .field("mx_tls", &self.mx_tls)
            .finish()
    }
}

/// The resolver could not be set up (the system configuration is unreadable).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the DNS resolver: {0}")]
pub struct ResolverSetupError(NetError);

impl Resolver {
    /// The configured name servers (UDP, falling back to TCP, on each one's port), or the system's.
    pub fn new(config: &DnsConfig) -> Result<Resolver, ResolverSetupError> {
        let mut builder = if config.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(ResolverSetupError)?
        } else {
            let servers = config
                .nameservers
                .iter()
                .map(|server| {
                    let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                        .into_iter()
                        .map(|mut connection| {
                            connection.port = server.port();
                            connection
                        })
                        .collect();
                    NameServerConfig::new(server.ip(), true, connections)
                })
                .collect();
            let mut builder = TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            );
            // Explicit name servers mean "ask these": a hosts file must not answer instead.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        };
        builder.options_mut().timeout = config.timeout;
        builder.options_mut().attempts = 2;
        let inner = builder.build().map_err(ResolverSetupError)?;
        Ok(Resolver {
            inner,
            mx_port: config.mx_port,
            mx_tls: config.mx_tls,
        })
    }

    /// The name `ip` has in reverse DNS (its first PTR record, without the final dot), and whether
    /// that name resolves back to `ip` (forward-confirmed). `None` when there is no PTR record or
    /// the look-up failed.
    pub async fn reverse_name(&self, ip: IpAddr) -> Option<(String, bool)> {
        let lookup = self.inner.reverse_lookup(ip).await.ok()?;
        let name = lookup
            .answers()
            .iter()
            .find_map(|record| match &record.data {
                RData::PTR(ptr) => Some(ptr.0.to_string()),
                _ => None,
            })?;
        let name = name.trim_end_matches('.').to_string();
        let verified = match self.inner.lookup_ip(name.as_str()).await {
            Ok(addresses) => addresses.iter().any(|a| a == ip),
            Err(_) => false,
        };
        Some((name, verified))
    }

    /// Where mail for `domain` goes, best first. `domain` may be a domain literal
    /// (`[127.0.0.1]`, `[IPv6:::1]`). The most specific matching route wins, whatever the order
    /// in the file (the exact domain, then the closest parent's subdomains, then `*`); of equally
    /// specific ones, the first.
    pub async fn resolve(&self, domain: &str, routes: &[Route]) -> Result<Vec<Target>, DnsError> {
        let best = routes
            .iter()
            .rev()
            .filter(|route| route.domain.matches(domain))
            .max_by_key(|route| route.domain.specificity());
        if let Some(route) = best {
            return self.route_targets(route).await;
        }
        if let Some(ip) = domain_literal(domain) {
            return Ok(vec![Target {
                host: ip.to_string(),
                addr: SocketAddr::new(ip, self.mx_port),
                tls: self.mx_tls,
            }]);
        }
        let exchanges = self.mx_hosts(domain).await?;
        let Some(exchanges) = exchanges else {
            // RFC 5321 §5.1: no MX records, so the domain itself is the implicit MX.
            return match self.addresses(domain).await {
                Ok(ips) => Ok(self.targets(domain, &ips, self.mx_port, self.mx_tls)),
                Err(DnsError::NxDomain { .. }) | Err(DnsError::NoAddress { .. }) => {
                    Err(DnsError::NoAddress {
                        domain: domain.to_string(),
                    })
                }
                Err(other) => Err(other),
            };
        };
        let mut targets = Vec::new();
        let mut last_error = None;
        for host in &exchanges {
            match self.addresses(host).await {
                Ok(ips) => targets.extend(self.targets(host, &ips, self.mx_port, self.mx_tls)),
                Err(e) => last_error = Some(e),
            }
            if targets.len() >= MAX_TARGETS {
                break;
            }
        }
        if targets.is_empty() {
            // The domain exists and names its exchanges; their names failing is not the
            // recipient's domain failing, so it is worth another try later.
            let detail = match last_error {
                Some(e) => format!("no MX host has an address ({e})"),
                None => "no MX host has an address".to_string(),
            };
            return Err(DnsError::Temporary {
                domain: domain.to_string(),
                rtype: "MX",
                detail,
            });
        }
        targets.dedup_by(|a, b| a.addr == b.addr);
        targets.truncate(MAX_TARGETS);
        Ok(targets)
    }

    async fn route_targets(&self, route: &Route) -> Result<Vec<Target>, DnsError> {
        let host = route.host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![Target {
                host: host.to_string(),
                addr: SocketAddr::new(ip, route.port),
                tls: route.tls,
            }]);
        }
        let ips = match self.addresses(host).await {
            Ok(ips) => ips,
            // A route names a host the operator chose; it not resolving is a configuration or
            // DNS problem to retry, never a reason to bounce the recipient's mail as undeliverable.
            Err(DnsError::NxDomain { domain, rtype }) => {
                return Err(DnsError::Temporary {
                    domain,
                    rtype,
                    detail: "NXDomain (route host)".into(),
                });
            }
            Err(DnsError::NoAddress { domain }) => {
                return Err(DnsError::Temporary {
                    domain,
                    rtype: "A",
                    detail: "no address (route host)".into(),
                });
            }
            Err(other) => return Err(other),
        };
        let mut targets = self.targets(host, &ips, route.port, route.tls);
        targets.truncate(MAX_TARGETS);
        Ok(targets)
    }

    fn targets(&self, host: &str, ips: &[IpAddr], port: u16, tls: TlsMode) -> Vec<Target> {
        ips.iter()
            .map(|ip| Target {
                host: host.to_string(),
                addr: SocketAddr::new(*ip, port),
                tls,
            })
            .collect()
    }

    /// The exchanges by preference, or `None` when the domain exists without MX records.
    async fn mx_hosts(&self, domain: &str) -> Result<Option<Vec<String>>, DnsError> {
        let lookup = match self.inner.mx_lookup(absolute(domain)).await {
            Ok(lookup) => lookup,
            Err(e) if is_no_data(&e) => return Ok(None),
            Err(e) => return Err(classify(domain, "MX", &e)),
        };
        let mut mxs: Vec<(u16, String)> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                _ => None,
            })
            .collect();
        if mxs.is_empty() {
            return Ok(None);
        }
        if mxs
            .iter()
            .any(|(_, exchange)| exchange == "." || exchange.is_empty())
        {
            return Err(DnsError::NullMx {
                domain: domain.to_string(),
            });
        }
        // Stable: equal preferences keep the server's order, which already varies per answer.
        mxs.sort_by_key(|(preference, _)| *preference);
        let mut hosts: Vec<String> = Vec::with_capacity(mxs.len());
        for (_, exchange) in mxs {
            let host = exchange.trim_end_matches('.').to_string();
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        Ok(Some(hosts))
    }

    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        match self.inner.lookup_ip(absolute(host)).await {
            Ok(lookup) => {
                let ips: Vec<IpAddr> = lookup.iter().collect();
                if ips.is_empty() {
                    Err(DnsError::NoAddress {
                        domain: host.to_string(),
                    })
                } else {
                    Ok(ips)
                }
            }
            Err(e) if is_no_data(&e) => Err(DnsError::NoAddress {
                domain: host.to_string(),
            }),
            Err(e) => Err(classify(host, "A", &e)),
        }
    }
}

/// `[127.0.0.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3).
pub fn domain_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => inner[5..]
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(IpAddr::V6),
        _ => inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// A trailing dot keeps the system resolver's search list from being appended.
fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// The name exists but has no record of the type asked for.
fn is_no_data(error: &NetError) -> bool {
    error.is_no_records_found() && !error.is_nx_domain()
}

fn classify(domain: &str, rtype: &'static str, error: &NetError) -> DnsError {
    if error.is_nx_domain() {
        return DnsError::NxDomain {
            domain: domain.to_string(),
            rtype,
        };
    }
    let detail = match error {
        NetError::Dns(HickoryDnsError::ResponseCode(code)) => response_code_name(*code),
        NetError::Timeout => "timeout".to_string(),
        other => other.to_string(),
    };
    DnsError::Temporary {
        domain: domain.to_string(),
        rtype,
        detail,
    }
}

fn response_code_name(code: ResponseCode) -> String {
    match code {
        ResponseCode::ServFail => "SERVFAIL".to_string(),
        ResponseCode::Refused => "REFUSED".to_string(),
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests;
