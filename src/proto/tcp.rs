//! Thin, typed wrappers over the system calls tcpkali needs: name
//! resolution, sockets and their options, interfaces, limits, affinity.

use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrLike, SockaddrStorage,
};
use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// `[ip]:port`, the address format of every tcpkali output line.
pub struct Bracketed(pub SocketAddr);

impl fmt::Display for Bracketed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]:{}", self.0.ip(), self.0.port())
    }
}

/// Resolves `host` and `port` (number or service name) as the system
/// resolver does, TCP only, one entry per distinct address.
pub fn resolve(host: Option<&str>, port: &str, passive: bool) -> Result<Vec<SocketAddr>, String> {
    let c_host = match host {
        Some(h) => Some(CString::new(h).map_err(|_| "host name contains NUL".to_string())?),
        None => None,
    };
    let c_port = CString::new(port).map_err(|_| "port contains NUL".to_string())?;
    // SAFETY: zeroed addrinfo is the documented way to build hints.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_STREAM;
    hints.ai_protocol = libc::IPPROTO_TCP;
    if passive {
        hints.ai_flags |= libc::AI_PASSIVE;
    }
    let mut res: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C strings (or null host), valid hints and out pointer.
    let rc = unsafe {
        libc::getaddrinfo(
            c_host.as_ref().map_or(std::ptr::null(), |h| h.as_ptr()),
            c_port.as_ptr(),
            &hints,
            &mut res,
        )
    };
    if rc != 0 {
        // SAFETY: gai_strerror returns a static string.
        let msg = unsafe { CStr::from_ptr(libc::gai_strerror(rc)) };
        return Err(msg.to_string_lossy().into_owned());
    }
    let mut out = Vec::new();
    let mut p = res;
    while !p.is_null() {
        // SAFETY: p walks the list getaddrinfo returned.
        let ai = unsafe { &*p };
        // SAFETY: ai_addr points to ai_addrlen bytes of a socket address.
        let storage = unsafe {
            SockaddrStorage::from_raw(ai.ai_addr, Some(ai.ai_addrlen as libc::socklen_t))
        };
        if let Some(addr) = storage.and_then(|s| to_std(&s)) {
            if !out.contains(&addr) {
                out.push(addr);
            }
        }
        p = ai.ai_next;
    }
    // SAFETY: res came from getaddrinfo.
    unsafe { libc::freeaddrinfo(res) };
    Ok(out)
}

fn to_std(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::new(v4.ip(), v4.port())));
    }
    s.as_sockaddr_in6().map(|v6| {
        SocketAddr::V6(SocketAddrV6::new(
            v6.ip(),
            v6.port(),
            v6.flowinfo(),
            v6.scope_id(),
        ))
    })
}

fn family(addr: &SocketAddr) -> AddressFamily {
    match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// Socket options applied to every data socket.
#[derive(Debug, Clone, Copy, Default)]
pub struct SockOpts {
    /// `Some(true)`: Nagle on (TCP_NODELAY=0); `None`: leave the default.
    pub nagle: Option<bool>,
    pub sndbuf: Option<usize>,
    pub rcvbuf: Option<usize>,
}

impl SockOpts {
    /// Applies the options to `fd`.
    pub fn apply<F: AsFd>(&self, fd: &F) -> nix::Result<()> {
        if let Some(nagle) = self.nagle {
            socket::setsockopt(fd, sockopt::TcpNoDelay, &!nagle)?;
        }
        if let Some(n) = self.sndbuf {
            socket::setsockopt(fd, sockopt::SndBuf, &n)?;
        }
        if let Some(n) = self.rcvbuf {
            socket::setsockopt(fd, sockopt::RcvBuf, &n)?;
        }
        Ok(())
    }
}

/// Creates a non-blocking TCP socket for `dest`, optionally bound to
/// `source` (port chosen at connect time), and starts connecting.
/// `Ok(true)`: connected at once; `Ok(false)`: in progress.
pub fn start_connect(
    dest: &SocketAddr,
    source: Option<&SocketAddr>,
    opts: &SockOpts,
) -> Result<(OwnedFd, bool), nix::Error> {
    let fd = socket::socket(
        family(dest),
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    opts.apply(&fd)?;
    if let Some(src) = source {
        // Let the port be chosen per (source, destination) pair at connect
        // time, so many source addresses lift the 64k ephemeral-port ceiling.
        socket::setsockopt(&fd, sockopt::IpBindAddressNoPort, &true)?;
        socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(*src))?;
    }
    match socket::connect(fd.as_raw_fd(), &SockaddrStorage::from(*dest)) {
        Ok(()) => Ok((fd, true)),
        Err(nix::Error::EINPROGRESS) => Ok((fd, false)),
        Err(e) => Err(e),
    }
}

/// Bytes written to a TCP socket that its peer has not acknowledged yet
/// (`SIOCOUTQ`): what closing it now would leave undelivered.
pub fn unsent_bytes(fd: RawFd) -> u64 {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ on Linux) stores one int into `queued`;
    // fd is open for the duration of this call.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    if r == 0 {
        u64::try_from(queued).unwrap_or(0)
    } else {
        0
    }
}

/// The pending error of a socket (the outcome of a non-blocking connect);
/// `None` when the connect succeeded.
pub fn take_error(fd: RawFd) -> Option<nix::Error> {
    // SAFETY: fd is open for the duration of this call.
    let bfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    match socket::getsockopt(&bfd, sockopt::SocketError) {
        Ok(0) => None,
        Ok(code) => Some(nix::Error::from_raw(code)),
        Err(e) => Some(e),
    }
}

/// Local and peer address of a connected socket.
pub fn endpoints(fd: RawFd) -> Option<(SocketAddr, SocketAddr)> {
    let local: SockaddrStorage = socket::getsockname(fd).ok()?;
    let peer: SockaddrStorage = socket::getpeername(fd).ok()?;
    Some((to_std(&local)?, to_std(&peer)?))
}

/// Opens a listening socket on `addr` that shares its port with sibling
/// sockets (SO_REUSEPORT), one per worker.
pub fn listen_reuseport(addr: &SocketAddr, opts: &SockOpts, backlog: i32) -> io::Result<OwnedFd> {
    let fd = socket::socket(
        family(addr),
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::setsockopt(&fd, sockopt::ReusePort, &true)?;
    if addr.is_ipv6() {
        // Lets [::]:P and 0.0.0.0:P coexist as two separate listeners.
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    // Accepted sockets inherit buffer sizes from the listener, and the
    // receive window scale is fixed at the handshake: set them here too.
    opts.apply(&fd)?;
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(*addr))?;
    socket::listen(&fd, Backlog::new(backlog).unwrap_or(Backlog::MAXCONN))?;
    Ok(fd)
}

/// Fails with EADDRINUSE when another socket already listens on `addr`
/// (bound without SO_REUSEPORT, so it cannot join an existing group).
pub fn probe_bind(addr: &SocketAddr) -> io::Result<()> {
    let fd = socket::socket(family(addr), SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    if addr.is_ipv6() {
        socket::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(*addr))?;
    Ok(())
}

/// Accepts one pending connection, non-blocking. `Ok(None)`: none pending.
pub fn accept(listener: RawFd) -> Result<Option<OwnedFd>, nix::Error> {
    // SAFETY: the listener stays open for the duration of the call.
    let lfd = unsafe { std::os::fd::BorrowedFd::borrow_raw(listener) };
    match socket::accept4(lfd, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC) {
        Ok(fd) => Ok(Some(fd)),
        Err(nix::Error::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The address the kernel would send from to reach `dest` (found with an
/// unconnected UDP socket, so no packet is sent).
pub fn route_source(dest: &SocketAddr) -> io::Result<IpAddr> {
    let bind: SocketAddr = match dest {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let udp = std::net::UdpSocket::bind(bind)?;
    udp.connect(dest)?;
    Ok(udp.local_addr()?.ip())
}

/// Checks that `ip` is an address of this host by binding to it.
pub fn is_local(ip: IpAddr) -> io::Result<()> {
    std::net::UdpSocket::bind((ip, 0)).map(|_| ())
}

/// One address of an up network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfAddr {
    pub name: String,
    pub ip: IpAddr,
}

/// Addresses of every interface that is up.
pub fn interface_addresses() -> nix::Result<Vec<IfAddr>> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        if !ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP) {
            continue;
        }
        let Some(addr) = ifa.address.as_ref() else {
            continue;
        };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        out.push(IfAddr {
            name: ifa.interface_name.clone(),
            ip,
        });
    }
    Ok(out)
}

/// Interface name without a legacy alias suffix (`eth0:1` is `eth0`).
pub fn base_ifname(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

/// CPUs this process may run on, in increasing order.
pub fn allowed_cpus() -> Vec<usize> {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => vec![0],
    }
}

/// The local port range connect() chooses from (`net.ipv4.ip_local_port_range`).
pub fn local_port_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(str::parse::<u16>);
    match (it.next(), it.next()) {
        (Some(Ok(low)), Some(Ok(high))) if low <= high => Some((low, high)),
        _ => None,
    }
}

/// The host's physical memory in bytes (0 when the system does not say).
pub fn physical_memory() -> u64 {
    // SAFETY: sysconf only reads system configuration.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    match (u64::try_from(pages), u64::try_from(size)) {
        (Ok(p), Ok(s)) => p.saturating_mul(s),
        _ => 0,
    }
}

/// Raises the soft open-files limit to the hard limit; returns (soft, hard)
/// in force afterwards.
pub fn raise_nofile() -> (u64, u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
                (hard, hard)
            } else {
                (soft, hard)
            }
        }
        Err(_) => (1024, 1024),
    }
}

/// What the kernel made of a requested buffer size: the value it reports
/// back for a fresh socket (Linux doubles requests and caps them at
/// `net.core.{w,r}mem_max`).
pub fn effective_buffer(send: bool, requested: usize) -> Option<usize> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ok()?;
    if send {
        socket::setsockopt(&fd, sockopt::SndBuf, &requested).ok()?;
        socket::getsockopt(&fd, sockopt::SndBuf).ok()
    } else {
        socket::setsockopt(&fd, sockopt::RcvBuf, &requested).ok()?;
        socket::getsockopt(&fd, sockopt::RcvBuf).ok()
    }
}

/// `write` that never raises SIGPIPE.
#[inline]
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid readable slice for its length.
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Two-part write (header remainder plus message area) in one system call.
#[inline]
pub fn send2(fd: RawFd, a: &[u8], b: &[u8]) -> io::Result<usize> {
    let iov = [
        libc::iovec {
            iov_base: a.as_ptr() as *mut libc::c_void,
            iov_len: a.len(),
        },
        libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        },
    ];
    // SAFETY: a zeroed msghdr with a valid iovec array is well formed.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = 2;
    // SAFETY: msg points to valid iovecs of readable memory.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `read` into `buf`.
#[inline]
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable slice for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The text of an errno, as strerror gives it.
pub fn strerror(e: nix::Error) -> &'static str {
    e.desc()
}
