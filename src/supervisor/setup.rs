//! From parsed options to a runnable plan: resolve destinations and listen
//! addresses, choose source addresses, size the worker pool (within the
//! kernel's limits, which `limits` reads), find what the plan outgrows,
//! and print the start-up lines tcpkali prints. Then, for the supervisor,
//! what every worker shares and each worker's own share.

use crate::cli::config::{Options, SslOptions};
use crate::content::expr::{Piece, RenderCtx, Scope, Template};
use crate::content::payload::{Payload, MIN_CYCLE};
use crate::content::Content;
use crate::proto::tcp::{self, Bracketed, SockOpts};
use crate::proto::tls::{ServerIdentity, TlsConfig, TlsConfigError, Trust, Versions};
use crate::supervisor::limits::{self, fds_per_worker, workers_to_fit, Shortfall, MAX_WORKERS};
use crate::supervisor::stages;
use crate::worker::latency;
use crate::worker::pace::Rate;
use crate::worker::{DestPlan, Marker, Shared, WorkerPlan, WsPlan};
use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

/// A run, resolved against this host.
#[derive(Debug, Clone)]
pub struct Plan {
    pub opts: Options,
    pub workers: usize,
    /// Every address of every destination operand.
    pub destinations: Vec<SocketAddr>,
    /// The host each destination address was given as (same index): the
    /// name TLS announces (SNI) and verifies.
    pub hosts: Vec<String>,
    /// Source addresses per destination (same index); empty: kernel's choice.
    pub sources: Vec<Vec<SocketAddr>>,
    pub listen: Vec<SocketAddr>,
    /// `--ssl`: the TLS set-up every worker inherits.
    pub tls: Option<TlsConfig>,
    /// The kernel limits this run outgrows, printed before the first fork.
    pub shortfalls: Vec<Shortfall>,
    /// The start-up lines (notes, destinations, sources, interfaces),
    /// printed once every check has passed, so that an error is the
    /// first and only line of a run that cannot start.
    pub startup: Vec<String>,
}

/// Why the plan could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupError {
    /// A destination operand did not resolve.
    Resolve { operand: String, reason: String },
    /// Resolution gave nothing usable.
    NoAddresses(String),
    /// A `--source-ip` value is unusable.
    SourceIp { value: String, reason: String },
    /// No source address of a destination's family was given.
    NoSourceFor(SocketAddr),
    /// The `-l` host did not resolve.
    ListenHost { spec: String, reason: String },
    /// A TLS file is missing or unusable.
    Tls(TlsConfigError),
    /// The connections' own message data would not fit in memory.
    ContentMemory(limits::ContentMemory),
}

impl SetupError {
    /// Process exit status for this error (all are usage errors).
    pub fn exit_code(&self) -> i32 {
        64
    }
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Resolve { operand, reason } => {
                write!(f, "Resolving destination {operand}: {reason}")
            }
            SetupError::NoAddresses(op) => {
                write!(f, "Destination {op}: DNS did not return usable addresses")
            }
            SetupError::SourceIp { value, reason } => {
                write!(
                    f,
                    "--source-ip={value}: local IP address expected: {reason}"
                )
            }
            SetupError::NoSourceFor(addr) => write!(
                f,
                "--source-ip: no address of the same family as destination {}",
                Bracketed(*addr)
            ),
            SetupError::ListenHost { spec, reason } => {
                write!(f, "--listen-port={spec}: cannot resolve: {reason}")
            }
            SetupError::Tls(e) => write!(f, "{e}"),
            SetupError::ContentMemory(e) => write!(f, "-m/-f: {e}"),
        }
    }
}

/// One CPU's worth of workers: the CPUs this process may use, or fewer when
/// a pure client asks for fewer connections than that.
pub fn cpu_workers(opts: &Options, cpus: usize) -> usize {
    let cpus = cpus.max(1);
    let peak = stages::peak_connections(opts);
    if opts.listen.is_none() && peak > 0 && (peak as usize) < cpus {
        peak as usize
    } else {
        cpus
    }
}

/// How many workers run without `-w`, and whether the descriptor limit
/// (not the CPUs) set that number.
pub fn default_workers(
    opts: &Options,
    cpus: usize,
    listen_addrs: usize,
    fd_limit: u64,
) -> (usize, bool) {
    let by_cpu = cpu_workers(opts, cpus);
    if fds_per_worker(opts, listen_addrs, by_cpu) <= fd_limit {
        return (by_cpu, false);
    }
    let fit = workers_to_fit(opts, listen_addrs, fd_limit).unwrap_or(MAX_WORKERS);
    (fit.max(by_cpu), fit > by_cpu)
}

/// Resolves everything and gathers the start-up lines, after `notes`.
pub fn prepare(opts: Options, notes: Vec<String>) -> Result<Plan, SetupError> {
    let mut startup = notes;
    let mut destinations = Vec::new();
    let mut hosts = Vec::new();
    for d in &opts.destinations {
        let operand = format!("{}:{}", d.host, d.port);
        let addrs =
            tcp::resolve(Some(&d.host), &d.port, false).map_err(|reason| SetupError::Resolve {
                operand: d.host_port.clone(),
                reason,
            })?;
        if addrs.is_empty() {
            return Err(SetupError::NoAddresses(operand));
        }
        for a in addrs {
            if !destinations.contains(&a) {
                destinations.push(a);
                hosts.push(d.host.clone());
            }
        }
    }
    for d in &destinations {
        startup.push(format!("Destination: {}", Bracketed(*d)));
    }
    let sources = if opts.source_ips.is_empty() {
        detect_sources(&destinations, &mut startup)
    } else {
        given_sources(&opts.source_ips, &destinations, &mut startup)?
    };
    let listen = match &opts.listen {
        None => Vec::new(),
        Some(l) => {
            let port = l.port.to_string();
            let addrs = match &l.host {
                Some(h) => tcp::resolve(Some(h), &port, true),
                None => Ok(vec![
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), l.port),
                    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), l.port),
                ]),
            }
            .map_err(|reason| SetupError::ListenHost {
                spec: match &l.host {
                    Some(h) => format!("{h}:{}", l.port),
                    None => port.clone(),
                },
                reason,
            })?;
            addrs
        }
    };
    limits::content_memory(&opts).map_err(SetupError::ContentMemory)?;
    let tls = match &opts.ssl {
        None => None,
        Some(ssl) => {
            let (config, note) = tls_config(ssl, !destinations.is_empty(), &listen, Path::new("."))
                .map_err(SetupError::Tls)?;
            startup.extend(note);
            Some(config)
        }
    };
    let workers = match opts.workers {
        Some(w) => w,
        None => {
            let cpus = tcp::allowed_cpus().len();
            let (soft, _) = tcp::raise_nofile();
            let (w, grown) = default_workers(&opts, cpus, listen.len(), soft);
            if grown {
                startup.push(format!(
                    "NOTE: {} connections need more open files than {} worker{} can hold (`ulimit -n` {soft} each); using {w} workers.",
                    stages::peak_connections(&opts),
                    cpu_workers(&opts, cpus),
                    if cpu_workers(&opts, cpus) == 1 { "" } else { "s" }
                ));
            }
            w
        }
    };
    let shortfalls = limits::check(&opts, workers, listen.len(), &destinations, &sources);
    Ok(Plan {
        opts,
        workers,
        destinations,
        hosts,
        sources,
        listen,
        tls,
        shortfalls,
        startup,
    })
}

/// The TLS set-up `--ssl` asks for: a client side when the run connects,
/// a server side when it listens (default files looked up in `dir`), and
/// the NOTE announcing an ephemeral certificate.
pub fn tls_config(
    ssl: &SslOptions,
    connects: bool,
    listen: &[SocketAddr],
    dir: &Path,
) -> Result<(TlsConfig, Option<String>), TlsConfigError> {
    let trust = connects.then(|| match (&ssl.ca, ssl.verify) {
        (Some(ca), _) => Trust::CaFile(PathBuf::from(ca)),
        (None, true) => Trust::SystemRoots,
        (None, false) => Trust::AnyCertificate,
    });
    let identity = (!listen.is_empty()).then(|| {
        let ips: Vec<IpAddr> = listen.iter().map(SocketAddr::ip).collect();
        ServerIdentity::choose(ssl.cert.as_deref(), ssl.key.as_deref(), dir, &ips)
    });
    let config = TlsConfig::new(trust.as_ref(), identity.as_ref(), Versions::Any)?;
    Ok((config, identity.and_then(|i| i.note())))
}

fn given_sources(
    values: &[String],
    dests: &[SocketAddr],
    startup: &mut Vec<String>,
) -> Result<Vec<Vec<SocketAddr>>, SetupError> {
    let mut all = Vec::new();
    for v in values {
        let block = address_block(v).map_err(|reason| SetupError::SourceIp {
            value: v.clone(),
            reason,
        })?;
        let is_block = block.is_some();
        let ips: Vec<IpAddr> = match (block, v.parse::<IpAddr>()) {
            (Some(ips), _) => ips,
            (None, Ok(ip)) => vec![ip],
            (None, Err(_)) => tcp::resolve(Some(v), "0", true)
                .map_err(|reason| SetupError::SourceIp {
                    value: v.clone(),
                    reason,
                })?
                .into_iter()
                .map(|a| a.ip())
                .collect(),
        };
        if is_block {
            if let (Some(first), Some(last)) = (ips.first(), ips.last()) {
                startup.push(format!(
                    "Source IPs: {first} to {last} ({} addresses)",
                    ips.len()
                ));
            }
        }
        let mut seen: std::collections::HashSet<SocketAddr> = all.iter().copied().collect();
        for ip in ips {
            tcp::is_local(ip).map_err(|e| SetupError::SourceIp {
                value: v.clone(),
                reason: format!("{ip}: {e}"),
            })?;
            let a = SocketAddr::new(ip, 0);
            if seen.insert(a) {
                if !is_block {
                    startup.push(format!("Source IP: {}", Bracketed(a)));
                }
                all.push(a);
            }
        }
    }
    dests
        .iter()
        .map(|d| {
            let same: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|s| s.is_ipv4() == d.is_ipv4())
                .collect();
            if same.is_empty() {
                Err(SetupError::NoSourceFor(*d))
            } else {
                Ok(same)
            }
        })
        .collect()
}

/// Most addresses one `--source-ip` range or CIDR block may expand to
/// (each is checked with a bind, and each worker cycles through its share).
pub const MAX_SOURCE_BLOCK: u128 = 65_536;

/// The addresses of a `--source-ip` range (`127.0.0.2-127.0.0.17`, both
/// ends included) or CIDR block (`127.0.0.0/28`; for IPv4 blocks larger
/// than /31 without the network and broadcast addresses, which hosts do
/// not use); `None` when `value` is neither.
pub fn address_block(value: &str) -> Result<Option<Vec<IpAddr>>, String> {
    if let Some((base, prefix)) = value.split_once('/') {
        let base: IpAddr = base
            .parse()
            .map_err(|_| format!("{base:?} is not an IP address"))?;
        let bits: u32 = if base.is_ipv4() { 32 } else { 128 };
        let prefix: u32 = prefix
            .parse()
            .ok()
            .filter(|&p| p <= bits)
            .ok_or_else(|| format!("prefix length 0..{bits} expected after /"))?;
        let size = 1u128 << (bits - prefix).min(127);
        let size = if bits - prefix == 128 {
            u128::MAX
        } else {
            size
        };
        let (mut first, mut last) = block_bounds(base, prefix);
        if base.is_ipv4() && prefix < 31 {
            first += 1;
            last -= 1;
        }
        if size > MAX_SOURCE_BLOCK {
            return Err(format!(
                "the block holds {} addresses, more than the {MAX_SOURCE_BLOCK} allowed",
                if size == u128::MAX {
                    "2^128".to_string()
                } else {
                    size.to_string()
                }
            ));
        }
        return Ok(Some(addresses(base.is_ipv4(), first, last)));
    }
    let Some((a, b)) = value.split_once('-') else {
        return Ok(None);
    };
    let (Ok(a), Ok(b)) = (a.parse::<IpAddr>(), b.parse::<IpAddr>()) else {
        // A host name with a dash in it.
        return Ok(None);
    };
    if a.is_ipv4() != b.is_ipv4() {
        return Err("both ends of a range must be of one address family".to_string());
    }
    let (first, last) = (ip_number(a), ip_number(b));
    if first > last {
        return Err(format!("the range ends ({b}) before it starts ({a})"));
    }
    if last - first >= MAX_SOURCE_BLOCK {
        return Err(format!(
            "the range holds {} addresses, more than the {MAX_SOURCE_BLOCK} allowed",
            last - first + 1
        ));
    }
    Ok(Some(addresses(a.is_ipv4(), first, last)))
}

fn ip_number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// First and last address (as numbers) of the block `base/prefix`.
fn block_bounds(base: IpAddr, prefix: u32) -> (u128, u128) {
    let bits = if base.is_ipv4() { 32 } else { 128 };
    let host_bits = bits - prefix;
    let host_mask = if host_bits == 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    let first = ip_number(base) & !host_mask;
    (first, first | host_mask)
}

fn addresses(v4: bool, first: u128, last: u128) -> Vec<IpAddr> {
    (first..=last)
        .map(|n| {
            if v4 {
                IpAddr::V4(Ipv4Addr::from(n as u32))
            } else {
                IpAddr::V6(Ipv6Addr::from(n))
            }
        })
        .collect()
}

/// For each destination: the interface the route to it leaves by, and all
/// that interface's addresses of the destination's family. A single address
/// is what the kernel would choose anyway, so it is not bound explicitly.
fn detect_sources(dests: &[SocketAddr], startup: &mut Vec<String>) -> Vec<Vec<SocketAddr>> {
    let ifaces = match tcp::interface_addresses() {
        Ok(i) => i,
        Err(e) => {
            if !dests.is_empty() {
                startup.push(format!(
                    "WARNING: Can't enumerate interfaces, won't use multiple source IPs: {}",
                    tcp::strerror(e)
                ));
            }
            return vec![Vec::new(); dests.len()];
        }
    };
    let mut announced = BTreeSet::new();
    dests
        .iter()
        .map(|d| {
            let Ok(local) = tcp::route_source(d) else {
                startup.push(format!(
                    "WARNING: Can't determine local interface to connect to {}",
                    Bracketed(*d)
                ));
                return Vec::new();
            };
            let Some(owner) = ifaces.iter().find(|i| i.ip == local) else {
                return Vec::new();
            };
            let base = tcp::base_ifname(&owner.name);
            let mut addrs = Vec::new();
            for i in &ifaces {
                let link_local =
                    matches!(i.ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80);
                if tcp::base_ifname(&i.name) != base || i.ip.is_ipv4() != d.is_ipv4() || link_local
                {
                    continue;
                }
                let a = SocketAddr::new(i.ip, 0);
                if announced.insert(i.ip) {
                    startup.push(format!("Interface {} address {}", i.name, Bracketed(a)));
                }
                addrs.push(a);
            }
            startup.push(format!(
                "Using interface {} to connect to {}",
                owner.name,
                Bracketed(*d)
            ));
            if addrs.len() > 1 {
                addrs
            } else {
                Vec::new()
            }
        })
        .collect()
}

/// Worker `i`'s share of `total` things split over `workers`.
pub fn share(total: u64, workers: usize, i: usize) -> u64 {
    let w = workers.max(1) as u64;
    total / w + u64::from((i as u64) < total % w)
}

/// Worker `i`'s source list: all of them, starting at a different one in
/// each worker. Every (source, destination) pair then carries the same
/// share of the connections; giving workers disjoint subsets would load
/// some pairs far more than others when sources and workers do not divide
/// evenly, and a pair holding more than half of the local port range makes
/// Linux's port search (even ports first, then odd) slow every connect().
pub fn source_subset(sources: &[SocketAddr], _workers: usize, i: usize) -> Vec<SocketAddr> {
    if sources.is_empty() {
        return Vec::new();
    }
    let start = i % sources.len();
    sources[start..]
        .iter()
        .chain(&sources[..start])
        .copied()
        .collect()
}

/// Pre-renders static content for one side (client frames are masked,
/// server frames are not).
fn render_static(content: &Content, client_side: bool, rng: &mut oorandom::Rand32) -> Payload {
    let mut ctx = RenderCtx {
        uid: 0,
        ptr: 0,
        rng,
        client_side,
    };
    let (mut once, mut message, mut markers) = (Vec::new(), Vec::new(), Vec::new());
    content.render_once(&mut ctx, &mut once, &mut markers);
    content.render_message(&mut ctx, &mut message, &mut markers);
    Payload::new(once, &message, MIN_CYCLE)
}

/// What every worker does alike, built once before the first fork.
pub fn shared(plan: &Plan) -> Shared {
    let o = &plan.opts;
    let content = o.content();
    let is_static = content.scope() == Scope::Static;
    let mut rng = oorandom::Rand32::new(latency::wall_micros());
    // Connections render content with per-connection or per-message parts
    // themselves; for static content the payloads are all there is.
    let (client, server) = if is_static {
        let client = render_static(&content, true, &mut rng);
        let server = render_static(&content, false, &mut rng);
        (
            client,
            o.listen_active.then_some(server).filter(|p| !p.is_empty()),
        )
    } else {
        (Payload::default(), None)
    };
    let message_len = content.message_lengths(true).avg;
    Shared {
        client,
        server,
        content: (!is_static).then_some(content),
        listen_active: o.listen_active,
        uid_shard: o.shard.unwrap_or((0, 1)),
        sockopts: SockOpts {
            nagle: o.nagle,
            sndbuf: o.sndbuf,
            rcvbuf: o.rcvbuf,
        },
        connect_timeout: o.connect_timeout,
        lifetime: o.channel_lifetime,
        delay_send: o.delay_send,
        write_combine: o.write_combine,
        verbosity: o.verbosity,
        send_rate: match (o.message_rate, o.bandwidth_up) {
            (Some(r), _) => Some(Rate::messages(r, message_len)),
            (None, Some(bw)) => Some(Rate::bytes(bw)),
            (None, None) => None,
        },
        message_len,
        recv_rate: o.bandwidth_down.filter(|&bw| bw > 0.0).map(Rate::bytes),
        never_read: o.bandwidth_down == Some(0.0),
        dump: o.dump,
        message_marker: o.message_marker,
        latency_connect: o.latency.connect,
        latency_first_byte: o.latency.first_byte,
        marker: o
            .latency
            .marker
            .as_ref()
            .map(|t| match t.pieces.as_slice() {
                [Piece::Bytes(b)] => Marker::Fixed(b.clone()),
                _ if t.scope() == Scope::Static => {
                    let mut ctx = RenderCtx {
                        uid: 0,
                        ptr: 0,
                        rng: &mut rng,
                        client_side: false,
                    };
                    let mut text = Vec::new();
                    t.render(&mut ctx, &mut text, &mut Vec::new());
                    Marker::Fixed(text)
                }
                _ => Marker::PerConnection(t.clone()),
            }),
        marker_skip: o.latency.marker_skip,
        message_stop: o.message_stop.clone(),
        pipeline: o.pipeline,
        tls: plan.tls.clone(),
        ws: o.websocket.then(|| WsPlan {
            path: o.ws_path.clone().unwrap_or(Template { pieces: Vec::new() }),
            host: o
                .destinations
                .first()
                .map(|d| d.host_port.as_bytes().to_vec())
                .unwrap_or_default(),
            headers: o.ws_headers.clone(),
        }),
    }
}

/// Each worker's share of the run: its connections, connect rate, source
/// addresses and the listeners (`listeners[i]`) it accepts from.
pub fn worker_plans(plan: &Plan, listeners: &[Vec<RawFd>]) -> Vec<WorkerPlan> {
    let cpus = tcp::allowed_cpus();
    (0..plan.workers)
        .map(|i| {
            let connections = share(plan.opts.connections, plan.workers, i);
            // Stages may ask for more connections than -c: each worker's
            // part of the connect rate follows its part of the most asked.
            let peak = stages::peak_connections(&plan.opts);
            let connect_rate = if peak == 0 {
                0.0
            } else {
                plan.opts.connect_rate * share(peak, plan.workers, i) as f64 / peak as f64
            };
            WorkerPlan {
                index: i,
                connections,
                connect_rate,
                destinations: plan
                    .destinations
                    .iter()
                    .zip(&plan.sources)
                    .zip(&plan.hosts)
                    .map(|((addr, sources), host)| DestPlan {
                        addr: *addr,
                        host: host.clone(),
                        sources: source_subset(sources, plan.workers, i),
                    })
                    .collect(),
                listeners: listeners.get(i).cloned().unwrap_or_default(),
                cpu: plan.opts.pin.then(|| cpus[i % cpus.len().max(1)]),
                stages: stages::segments(&plan.opts, |n| share(n, plan.workers, i)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tcpkali-setup-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn any_port(ip: IpAddr) -> SocketAddr {
        SocketAddr::new(ip, 8443)
    }

    #[test]
    fn a_tls_sink_without_files_gets_an_ephemeral_certificate_and_a_note() {
        let dir = empty_dir("ephemeral");
        let listen = [
            any_port(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            any_port(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        ];
        let (config, note) =
            tls_config(&SslOptions::default(), false, &listen, &dir).expect("config");
        assert_eq!(
            note.as_deref(),
            Some("NOTE: --ssl: no cert.pem here, serving an ephemeral self-signed certificate for localhost, 127.0.0.1, ::1")
        );
        assert!(config.server_session().is_some());
        assert!(config
            .client_session(crate::proto::tls::server_name(
                "localhost",
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            ))
            .is_none());
    }

    #[test]
    fn a_tls_client_reads_no_server_files() {
        let dir = empty_dir("client");
        let ssl = SslOptions {
            cert: Some("/nonexistent/cert.pem".into()),
            ..SslOptions::default()
        };
        let (config, note) = tls_config(&ssl, true, &[], &dir).expect("config");
        assert_eq!(note, None);
        assert!(config.server_session().is_none());
    }

    #[test]
    fn a_named_certificate_that_is_missing_stops_a_tls_sink() {
        let dir = empty_dir("missing");
        let ssl = SslOptions {
            cert: Some("/nonexistent/cert.pem".into()),
            ..SslOptions::default()
        };
        let listen = [any_port(IpAddr::V4(Ipv4Addr::LOCALHOST))];
        let e = tls_config(&ssl, false, &listen, &dir).expect_err("must fail");
        assert_eq!(
            SetupError::Tls(e).to_string(),
            "/nonexistent/cert.pem: Can not access X.509 certificate file: No such file or directory"
        );
    }

    #[test]
    fn a_cert_pem_without_key_pem_stops_a_tls_sink() {
        let dir = empty_dir("no-key");
        let made =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("rcgen");
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).expect("write");
        let listen = [any_port(IpAddr::V4(Ipv4Addr::LOCALHOST))];
        let e = tls_config(&SslOptions::default(), false, &listen, &dir).expect_err("must fail");
        assert!(matches!(e, TlsConfigError::KeyFile { .. }), "{e}");
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).expect("write");
        let (_, note) = tls_config(&SslOptions::default(), false, &listen, &dir).expect("config");
        assert_eq!(note, None, "the files in the directory are used");
    }

    #[test]
    fn ssl_ca_means_verification_against_that_file() {
        let dir = empty_dir("ca");
        let ssl = SslOptions {
            verify: true,
            ca: Some(dir.join("none.pem").display().to_string()),
            ..SslOptions::default()
        };
        let e = tls_config(&ssl, true, &[], &dir).expect_err("must fail");
        assert!(matches!(e, TlsConfigError::CaFile { .. }), "{e}");
        // Without a destination there is nothing to verify.
        tls_config(&ssl, false, &[], &dir).expect("config");
    }

    #[test]
    fn shares_add_up_to_the_total() {
        for (total, workers) in [(10, 3), (1, 2), (0, 4), (9000, 2), (7, 7)] {
            let sum: u64 = (0..workers).map(|i| share(total, workers, i)).sum();
            assert_eq!(sum, total);
        }
        assert_eq!(share(10, 3, 0), 4);
        assert_eq!(share(10, 3, 2), 3);
    }

    #[test]
    fn every_worker_cycles_all_sources_from_its_own_start() {
        let s: Vec<SocketAddr> = (1..=4)
            .map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)), 0))
            .collect();
        assert_eq!(source_subset(&s, 2, 0), s);
        assert_eq!(source_subset(&s, 2, 1), vec![s[1], s[2], s[3], s[0]]);
        assert_eq!(source_subset(&s, 8, 5), vec![s[1], s[2], s[3], s[0]]);
        assert_eq!(source_subset(&s[..1], 2, 1), vec![s[0]]);
        assert!(source_subset(&[], 2, 1).is_empty());
        let per_dest = vec![s.clone(), Vec::new()];
        assert_eq!(limits::connections_per_pair(100, &per_dest), 20);
    }

    #[test]
    fn a_small_client_gets_one_worker_per_connection() {
        let opts = Options {
            connections: 1,
            ..Options::default()
        };
        assert_eq!(default_workers(&opts, 2, 0, 1024), (1, false));
        let listening = Options {
            connections: 1,
            listen: Some(crate::cli::config::ListenSpec {
                host: None,
                port: 1,
            }),
            ..Options::default()
        };
        assert_eq!(default_workers(&listening, 2, 2, 1024), (2, false));
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().expect("ip")).collect()
    }

    #[test]
    fn a_source_range_includes_both_ends() {
        assert_eq!(
            address_block("127.0.0.2-127.0.0.4").expect("range"),
            Some(ips(&["127.0.0.2", "127.0.0.3", "127.0.0.4"]))
        );
        assert_eq!(
            address_block("::1-::2").expect("v6 range"),
            Some(ips(&["::1", "::2"]))
        );
        assert_eq!(address_block("my-host").expect("a name"), None);
        assert_eq!(address_block("127.0.0.1").expect("one address"), None);
    }

    #[test]
    fn an_ipv4_cidr_block_leaves_out_network_and_broadcast() {
        let block = address_block("127.0.0.0/28").expect("cidr").expect("block");
        assert_eq!(block.len(), 14);
        assert_eq!(block[0], ips(&["127.0.0.1"])[0]);
        assert_eq!(block[13], ips(&["127.0.0.14"])[0]);
        assert_eq!(
            address_block("127.0.0.9/32").expect("/32"),
            Some(ips(&["127.0.0.9"]))
        );
        assert_eq!(
            address_block("::1/127").expect("v6 /127"),
            Some(ips(&["::", "::1"]))
        );
    }

    #[test]
    fn oversized_or_malformed_blocks_are_refused() {
        assert!(address_block("10.0.0.0/8").is_err());
        assert!(address_block("::/0").is_err());
        assert!(address_block("127.0.0.0/33").is_err());
        assert!(address_block("127.0.0.x/28").is_err());
        assert!(address_block("127.0.0.9-127.0.0.2").is_err());
        assert!(address_block("127.0.0.1-::1").is_err());
    }

    #[test]
    fn the_descriptor_limit_sets_the_worker_count() {
        let self_loop = Options {
            connections: 30_000,
            listen: Some(crate::cli::config::ListenSpec {
                host: None,
                port: 1,
            }),
            destinations: vec![crate::cli::config::DestSpec {
                host: "127.0.0.1".into(),
                port: "1".into(),
                path: String::new(),
                host_port: "127.0.0.1:1".into(),
            }],
            ..Options::default()
        };
        let (w, grown) = default_workers(&self_loop, 2, 2, 4096);
        assert!(grown);
        assert!(fds_per_worker(&self_loop, 2, w) <= 4096);
        assert!(fds_per_worker(&self_loop, 2, w - 1) > 4096);
        assert_eq!(default_workers(&self_loop, 2, 2, 1 << 20), (2, false));
        assert_eq!(workers_to_fit(&self_loop, 2, 100), None);
    }

    #[test]
    fn destinations_resolve_short_forms_and_ipv6() {
        assert_eq!(
            tcp::resolve(Some("127.1"), "80", false).expect("127.1"),
            vec!["127.0.0.1:80".parse::<SocketAddr>().expect("addr")]
        );
        assert_eq!(
            tcp::resolve(Some("::1"), "8080", false).expect("::1"),
            vec!["[::1]:8080".parse::<SocketAddr>().expect("addr")]
        );
    }
}
