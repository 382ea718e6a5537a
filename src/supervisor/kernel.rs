//! The system-wide kernel settings a large run outgrows, beyond the
//! per-process ones in `limits`: the connection-tracking table, the
//! system's open-file table and per-process ceiling, and the listen
//! queues a self-loop's connect rate fills. Values are read from /proc
//! once ([`KernelSettings::read`]); what falls short is plain arithmetic
//! over them ([`shortfalls`]), each with the command that lifts it. Never
//! changes a setting itself.

use std::fmt;
use std::net::SocketAddr;

/// The settings, as far as the system shows them (`None`: not readable,
/// or the module is not loaded).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelSettings {
    pub conntrack_max: Option<u64>,
    pub conntrack_count: Option<u64>,
    pub file_max: Option<u64>,
    /// File handles allocated system-wide now.
    pub files_in_use: Option<u64>,
    pub nr_open: Option<u64>,
    pub somaxconn: Option<u64>,
    pub syn_backlog: Option<u64>,
    /// `net.ipv4.tcp_syncookies`: with cookies (1, the default) a full
    /// SYN queue answers with cookies instead of dropping.
    pub syncookies: Option<u64>,
}

fn proc_number(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

const CONNTRACK_MAX: &str = "/proc/sys/net/netfilter/nf_conntrack_max";
const CONNTRACK_COUNT: &str = "/proc/sys/net/netfilter/nf_conntrack_count";

impl KernelSettings {
    pub fn read() -> KernelSettings {
        KernelSettings {
            conntrack_max: proc_number(CONNTRACK_MAX),
            conntrack_count: proc_number(CONNTRACK_COUNT),
            file_max: proc_number("/proc/sys/fs/file-max"),
            files_in_use: proc_number("/proc/sys/fs/file-nr"),
            nr_open: proc_number("/proc/sys/fs/nr_open"),
            somaxconn: proc_number("/proc/sys/net/core/somaxconn"),
            syn_backlog: proc_number("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
            syncookies: proc_number("/proc/sys/net/ipv4/tcp_syncookies"),
        }
    }
}

/// Whether the connection-tracking table is full now (the kernel then
/// drops new connections' SYNs): (entries, maximum) when it is.
pub fn conntrack_full() -> Option<(u64, u64)> {
    let max = proc_number(CONNTRACK_MAX)?;
    let count = proc_number(CONNTRACK_COUNT)?;
    (max > 0 && count >= max).then_some((count, max))
}

/// What a run asks of the system.
#[derive(Debug, Clone, PartialEq)]
pub struct Needs {
    /// Outgoing connections at the peak.
    pub connections: u64,
    /// Sockets the run holds at the peak (both ends of a self-loop).
    pub sockets: u64,
    /// Descriptors the busiest worker holds.
    pub per_worker: u64,
    /// The run accepts its own connections (listen and connect).
    pub self_loop: bool,
    /// Connects per second, and the listeners sharing them.
    pub connect_rate: f64,
    pub listeners: u64,
    /// The listen backlog asked for each listener.
    pub backlog: u64,
    /// The destinations (for the conntrack exemption's command).
    pub destinations: Vec<SocketAddr>,
}

/// How long a burst of connects the listen queues must absorb while the
/// workers are busy elsewhere: 100 ms of the connect rate.
const BURST_S: f64 = 0.1;

/// A kernel setting the run outgrows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelShortfall {
    /// Fewer free conntrack entries than the run's connections.
    Conntrack {
        max: u64,
        in_use: u64,
        needed: u64,
        example: Option<SocketAddr>,
    },
    /// The system-wide file table has less room than the run's sockets.
    FileMax { max: u64, in_use: u64, needed: u64 },
    /// No process may open as many descriptors as a worker needs.
    NrOpen { max: u64, needed: u64 },
    /// A listen queue shorter than a burst of the connect rate.
    Backlog {
        sysctl: &'static str,
        value: u64,
        needed: u64,
        /// Connects per second.
        rate: u64,
    },
}

impl fmt::Display for KernelShortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelShortfall::Conntrack {
                max,
                in_use,
                needed,
                example,
            } => {
                write!(
                    f,
                    "net.netfilter.nf_conntrack_max {max} with {in_use} in use leaves room for {} connections; this run opens {needed}, and past that the kernel drops new connections' SYNs. Raise it (sysctl -w net.netfilter.nf_conntrack_max={}) or keep the test's traffic out of the table",
                    max.saturating_sub(*in_use),
                    (in_use + needed).saturating_mul(5) / 4,
                )?;
                match example {
                    Some(d) => write!(
                        f,
                        " (iptables -t raw -I OUTPUT -p tcp -d {ip} --dport {port} -j NOTRACK; iptables -t raw -I OUTPUT -p tcp -s {ip} --sport {port} -j NOTRACK; the same in PREROUTING for traffic from other hosts).",
                        ip = d.ip(),
                        port = d.port()
                    ),
                    None => f.write_str(" (iptables -t raw rules with -j NOTRACK)."),
                }
            }
            KernelShortfall::FileMax {
                max,
                in_use,
                needed,
            } => write!(
                f,
                "fs.file-max {max} with {in_use} open leaves room for {} files; this run needs about {needed} sockets. Raise it: sysctl -w fs.file-max={}.",
                max.saturating_sub(*in_use),
                (in_use + needed).saturating_mul(5) / 4
            ),
            KernelShortfall::NrOpen { max, needed } => write!(
                f,
                "fs.nr_open {max} caps every process's open files below the {needed} a worker needs; use more workers (-w), or raise it: sysctl -w fs.nr_open={}.",
                needed.saturating_mul(5) / 4
            ),
            KernelShortfall::Backlog {
                sysctl,
                value,
                needed,
                rate,
            } => write!(
                f,
                "{sysctl} {value} caps each listener's queue below the {needed} connections that 100 ms of --connect-rate {rate} brings; connects beyond it are dropped and retried seconds later. Raise it: sysctl -w {sysctl}={needed}."
            ),
        }
    }
}

/// Every setting of `k` that `needs` outgrows.
pub fn shortfalls(needs: &Needs, k: &KernelSettings) -> Vec<KernelShortfall> {
    let mut found = Vec::new();
    if let (Some(max), Some(in_use)) = (k.conntrack_max, k.conntrack_count) {
        let needed = needs.connections;
        if needed > max.saturating_sub(in_use) {
            found.push(KernelShortfall::Conntrack {
                max,
                in_use,
                needed,
                example: needs.destinations.first().copied(),
            });
        }
    }
    if let (Some(max), Some(in_use)) = (k.file_max, k.files_in_use) {
        if needs.sockets > max.saturating_sub(in_use) {
            found.push(KernelShortfall::FileMax {
                max,
                in_use,
                needed: needs.sockets,
            });
        }
    }
    if let Some(max) = k.nr_open {
        if needs.per_worker > max {
            found.push(KernelShortfall::NrOpen {
                max,
                needed: needs.per_worker,
            });
        }
    }
    if needs.self_loop && needs.connect_rate.is_finite() && needs.connect_rate > 0.0 {
        let per_listener = needs.connect_rate * BURST_S / needs.listeners.max(1) as f64;
        let needed = (per_listener.ceil() as u64).min(needs.backlog.max(1));
        // The SYN queue's cap drops only when SYN cookies are off.
        let syn_backlog = k.syn_backlog.filter(|_| k.syncookies == Some(0));
        for (sysctl, value) in [
            ("net.core.somaxconn", k.somaxconn),
            ("net.ipv4.tcp_max_syn_backlog", syn_backlog),
        ] {
            if let Some(value) = value.filter(|&v| v < needed) {
                found.push(KernelShortfall::Backlog {
                    sysctl,
                    value,
                    needed,
                    rate: needs.connect_rate.round() as u64,
                });
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This box's settings when the million-connection run stalled.
    fn stock() -> KernelSettings {
        KernelSettings {
            conntrack_max: Some(262_144),
            conntrack_count: Some(0),
            file_max: Some(2_466_097),
            files_in_use: Some(385),
            nr_open: Some(1_048_576),
            somaxconn: Some(4096),
            syn_backlog: Some(2048),
            syncookies: Some(1),
        }
    }

    fn needs(connections: u64, rate: f64) -> Needs {
        Needs {
            connections,
            sockets: 2 * connections,
            per_worker: connections / 40 + 32,
            self_loop: true,
            connect_rate: rate,
            listeners: 2,
            backlog: 4096,
            destinations: vec!["127.0.0.1:9000".parse().expect("addr")],
        }
    }

    #[test]
    fn a_modest_run_fits_the_stock_settings() {
        assert_eq!(shortfalls(&needs(10_000, 100.0), &stock()), vec![]);
    }

    #[test]
    fn a_full_conntrack_table_is_named_with_both_ways_out() {
        let found = shortfalls(&needs(400_000, 100.0), &stock());
        assert_eq!(found.len(), 1, "{found:?}");
        let line = found[0].to_string();
        assert!(
            line.starts_with("net.netfilter.nf_conntrack_max 262144 with 0 in use leaves room for 262144 connections; this run opens 400000,"),
            "{line}"
        );
        assert!(
            line.contains("sysctl -w net.netfilter.nf_conntrack_max=500000"),
            "{line}"
        );
        assert!(
            line.contains("iptables -t raw -I OUTPUT -p tcp -d 127.0.0.1 --dport 9000 -j NOTRACK"),
            "{line}"
        );
    }

    #[test]
    fn entries_in_use_count_against_the_table() {
        let mut k = stock();
        k.conntrack_count = Some(260_000);
        let found = shortfalls(&needs(10_000, 100.0), &k);
        assert!(matches!(
            found[..],
            [KernelShortfall::Conntrack { needed: 10_000, .. }]
        ));
        // Without the module there is no table to fill.
        k.conntrack_max = None;
        k.conntrack_count = None;
        assert_eq!(shortfalls(&needs(10_000, 100.0), &k), vec![]);
    }

    #[test]
    fn the_file_table_and_the_per_process_ceiling() {
        let mut k = stock();
        k.conntrack_max = None;
        k.file_max = Some(1_000_000);
        k.nr_open = Some(10_000);
        let found = shortfalls(&needs(1_000_000, 100.0), &k);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].to_string().starts_with(
            "fs.file-max 1000000 with 385 open leaves room for 999615 files; this run needs about 2000000 sockets."
        ));
        assert!(found[1]
            .to_string()
            .starts_with("fs.nr_open 10000 caps every process's open files below the 25032"));
    }

    #[test]
    fn a_connect_rate_past_the_listen_queues_is_named() {
        let mut k = stock();
        k.conntrack_max = None;
        // 200k/s over 2 listeners: 10,000 arrive per listener in 100 ms,
        // more than the 4096 backlog asked, so 4096 is what is needed.
        // With SYN cookies on, a full SYN queue drops nothing.
        assert_eq!(shortfalls(&needs(100_000, 200_000.0), &k), vec![]);
        k.syncookies = Some(0);
        k.somaxconn = Some(1024);
        let found = shortfalls(&needs(100_000, 200_000.0), &k);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0]
            .to_string()
            .starts_with("net.core.somaxconn 1024 caps each listener's queue below the 4096"));
        assert_eq!(
            found[1].to_string(),
            "net.ipv4.tcp_max_syn_backlog 2048 caps each listener's queue below the 4096 connections that 100 ms of --connect-rate 200000 brings; connects beyond it are dropped and retried seconds later. Raise it: sysctl -w net.ipv4.tcp_max_syn_backlog=4096."
        );
        // A client of another host's server: its queues are not ours.
        let mut remote = needs(100_000, 200_000.0);
        remote.self_loop = false;
        assert_eq!(shortfalls(&remote, &k), vec![]);
    }
}
