//! Free loopback ports for test services, never handed out twice in one process.

use std::net::TcpListener;

/// Ports handed to test services come from below the kernel's ephemeral range
/// (32768 and up on Linux), so no outgoing connection or `bind(0)` elsewhere can take
/// one between the moment it is chosen and the moment the child binds it.
const PORTS: std::ops::Range<u16> = 10_000..32_000;

/// Takes the next `n` consecutive ports that are free now, from a cursor shared by
/// every test of this process (so concurrent tests never get the same ones) and
/// starting at an offset derived from the process id (so test binaries that run at
/// the same time start far apart).
fn take_ports(n: u16) -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static CURSOR: AtomicU16 = AtomicU16::new(0);
    let span = PORTS.end - PORTS.start;
    let _ = CURSOR.compare_exchange(
        0,
        (std::process::id() % u32::from(span / 100)) as u16 * 100 + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..span / n {
        let offset = CURSOR.fetch_add(n, Ordering::SeqCst) % (span - n);
        let base = PORTS.start + offset;
        if (base..base + n).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
    panic!("no {n} free consecutive ports in {PORTS:?}");
}

/// A port base B under which the whole default layout is free (front-end B + 80,
/// catalog B + 81, replicas B + 91…; [`common::topology::Ports::from_base`]).
pub fn free_port_base() -> u16 {
    take_ports(common::topology::Ports::SPAN)
}

/// `n` free loopback ports (see [`take_ports`]).
pub(super) fn free_ports(n: usize) -> Vec<u16> {
    let base = take_ports(n as u16);
    (base..base + n as u16).collect()
}
