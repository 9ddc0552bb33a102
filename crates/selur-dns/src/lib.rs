//! Selur's cluster DNS server, one per agent.
//!
//! It answers, authoritatively, the names of the cluster domain
//! (`cluster.local`): Services (`<svc>.<ns>.svc.<domain>`, ClusterIP or, for
//! headless Services, the ready endpoints), endpoint and pod names, SRV for
//! named ports, and PTR for the addresses it knows. Every other name is
//! forwarded to the node's resolvers, with SERVFAIL after a bounded time
//! when none answers.
//!
//! It holds no watch of its own: the agent builds [`Records`] from its watch
//! cache (a pure function of a snapshot) and pushes them with
//! [`DnsHandle::update`]. The listeners are hickory-server's; answering
//! and forwarding are here. Not here: DNSSEC, zone transfers, search-path
//! expansion (clients do that), negative caching of upstream answers, the
//! `<ns>.pod` wildcard of `pods insecure` (only known pods' names answer).

#![forbid(unsafe_code)]

pub mod forward;
pub mod load;
pub mod records;
mod resolv_conf;
mod server;

pub use records::{Lookup, Records, TTL};
pub use resolv_conf::upstreams_from_resolv_conf;
pub use server::{serve, DnsConfig, DnsError, DnsHandle, DnsServer};
