//! herald: a self-hosted SMTP relay that sends billing mail as the
//! customer's own domain, DKIM-signed and aligned.
//!
//! The modules follow the path a message takes:
//! `submission` (SMTP in) → `message` (header checks) → `store` (durable
//! spool, group commit) → `queue` (scheduler, retries) → `delivery`
//! (signing, routing, SMTP out), and back through `inbound` (bounces).
//! Beside it: `policy` and `dkim` (who signs, and how), `domains`
//! (customer domains and their verification), `dns`, `config`, `admin`
//! (HTTP API), `cli`, `server` (the composition root), `tls`, `clock`,
//! `id`, and `bench` (load tool and test sink).

pub mod admin;
pub mod bench;
pub mod bounce;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod dns;
pub mod dns_server;
pub mod dkim;
pub mod domains;
pub mod events;
pub mod id;
pub mod inbound;
pub mod inspect;
pub mod memory;
pub mod message;
pub mod policy;
pub mod queue;
pub mod server;
pub mod smtpd;
pub mod store;
pub mod submission;
pub mod suppression;
pub mod tls;
pub mod webhooks;
