//! Who may connect: counts the connections each IP address holds and those of the
//! whole server, across every core, against `max_conns_per_ip` and `max_connections`.
//! An admitted connection holds an [`Admitted`] guard, which gives its place back when
//! dropped. It does not answer a refused connection: the core's accept loop does.
//!
//! Shared by every core (the one structure here that is): the accept path is not hot,
//! so a mutex over the per-address counts is enough. An address with no connection has
//! no entry, so the map is bounded by the open connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::Config;

/// `Retry-After` of a refusal, in seconds: long enough that a client retrying on it
/// does not hammer a full server, short enough that a freed place is soon used.
pub(crate) const RETRY_AFTER_S: u32 = 5;

/// Why a connection was turned away at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its address holds `max_conns_per_ip` connections: HTTP 429.
    PerIp,
    /// The server holds `max_connections`: HTTP 503.
    Total,
}

impl Refusal {
    /// The HTTP status it is answered with.
    pub(crate) fn status(self) -> u16 {
        match self {
            Refusal::PerIp => 429,
            Refusal::Total => 503,
        }
    }

    /// The short text body of the answer.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::PerIp => "too many connections from this address",
            Refusal::Total => "server full",
        }
    }
}

/// The connection counts of the whole server.
#[derive(Debug)]
pub(crate) struct Admission {
    max_per_ip: usize,
    max_total: usize,
    /// Connections per address; only kept while `max_per_ip` is set.
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Connections in all; only kept while `max_total` is set.
    total: AtomicUsize,
}

/// An admitted connection's place in the counts, given back on drop.
#[derive(Debug)]
pub(crate) struct Admitted {
    admission: Arc<Admission>,
    /// The address counted, if addresses are counted.
    ip: Option<IpAddr>,
}

impl Admission {
    pub(crate) fn new(config: &Config) -> Self {
        Admission {
            max_per_ip: config.max_conns_per_ip,
            max_total: config.max_connections,
            per_ip: Mutex::new(HashMap::new()),
            total: AtomicUsize::new(0),
        }
    }

    /// Admits a connection from `ip`, or says why not. `Ok(None)`: no limit is set,
    /// nothing is counted and there is nothing to give back.
    pub(crate) fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Result<Option<Admitted>, Refusal> {
        if self.max_per_ip == 0 && self.max_total == 0 {
            return Ok(None);
        }
        // An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        if self.max_per_ip == 0 {
            self.try_take_total()?;
            return Ok(Some(self.admitted(None)));
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let held = per_ip.get(&ip).copied().unwrap_or(0);
        if held as usize >= self.max_per_ip {
            return Err(Refusal::PerIp);
        }
        self.try_take_total()?;
        per_ip.insert(ip, held + 1);
        Ok(Some(self.admitted(Some(ip))))
    }

    fn admitted(self: &Arc<Self>, ip: Option<IpAddr>) -> Admitted {
        Admitted {
            admission: self.clone(),
            ip,
        }
    }

    /// Takes a place under `max_connections`, if it is set.
    fn try_take_total(&self) -> Result<(), Refusal> {
        if self.max_total == 0 {
            return Ok(());
        }
        self.total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            })
            .map(drop)
            .map_err(|_| Refusal::Total)
    }

    /// Connections `ip` holds now (for tests).
    #[cfg(test)]
    fn held_by(&self, ip: IpAddr) -> u32 {
        let per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        per_ip.get(&ip.to_canonical()).copied().unwrap_or(0)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let admission = &*self.admission;
        if admission.max_total > 0 {
            admission.total.fetch_sub(1, Ordering::AcqRel);
        }
        let Some(ip) = self.ip else { return };
        let mut per_ip = admission
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = per_ip.get_mut(&ip) {
            *held -= 1;
            if *held == 0 {
                // No entry for an address without connections: the map stays bounded.
                per_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn admission(max_per_ip: usize, max_total: usize) -> Arc<Admission> {
        Arc::new(Admission::new(&Config {
            max_conns_per_ip: max_per_ip,
            max_connections: max_total,
            ..Config::default()
        }))
    }

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn without_limits_nothing_is_counted() {
        let admission = admission(0, 0);
        for _ in 0..10 {
            assert!(admission.try_admit(A).unwrap().is_none());
        }
        assert!(admission.per_ip.lock().unwrap().is_empty());
    }

    #[test]
    fn an_address_at_its_limit_is_refused_and_others_are_not() {
        let admission = admission(2, 0);
        let held = [admission.try_admit(A), admission.try_admit(A)];
        assert!(held.iter().all(|a| matches!(a, Ok(Some(_)))));
        assert_eq!(admission.try_admit(A).unwrap_err(), Refusal::PerIp);
        let other = admission.try_admit(B).unwrap();
        assert!(other.is_some());
        drop(held);
        assert!(admission.try_admit(A).unwrap().is_some());
    }

    #[test]
    fn an_address_without_connections_has_no_entry() {
        let admission = admission(3, 0);
        let guards: Vec<_> = (0..3).map(|_| admission.try_admit(A).unwrap()).collect();
        assert_eq!(admission.held_by(A), 3);
        drop(guards);
        assert_eq!(admission.held_by(A), 0);
        assert!(admission.per_ip.lock().unwrap().is_empty());
    }

    #[test]
    fn the_server_limit_counts_every_address_and_a_refusal_takes_nothing() {
        let admission = admission(2, 3);
        let a = [
            admission.try_admit(A).unwrap(),
            admission.try_admit(A).unwrap(),
        ];
        let b = admission.try_admit(B).unwrap();
        assert_eq!(admission.try_admit(B).unwrap_err(), Refusal::Total);
        assert_eq!(admission.try_admit(A).unwrap_err(), Refusal::PerIp);
        assert_eq!(admission.held_by(B), 1, "the refused one is not counted");
        drop(b);
        assert!(admission.try_admit(B).unwrap().is_some());
        drop(a);
        assert_eq!(admission.total.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn only_the_server_limit_keeps_no_map() {
        let admission = admission(0, 1);
        let held = admission.try_admit(A).unwrap();
        assert_eq!(admission.try_admit(B).unwrap_err(), Refusal::Total);
        assert!(admission.per_ip.lock().unwrap().is_empty());
        drop(held);
        assert!(admission.try_admit(B).is_ok());
    }

    #[test]
    fn an_ipv4_client_of_a_dual_stack_listener_counts_as_its_ipv4_address() {
        let admission = admission(1, 0);
        let mapped = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        let _held = admission.try_admit(A).unwrap();
        assert_eq!(admission.try_admit(mapped).unwrap_err(), Refusal::PerIp);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert!(admission.try_admit(v6).unwrap().is_some());
    }
}
