//! servocell services (docs/DESIGN.md §6): each service is a pure state machine plus a thin async
//! shell written against traits for the network, the disk and the fieldbus, so the same code
//! runs inside turmoil hosts (`sim` supplies the implementations) and in real runs (the tokio and
//! std implementations here).
//!
//! Code map:
//! - `transport`: `Transport` / `Listener` traits, `TokioTransport`.
//! - `storage`: `Storage` trait (POSIX crash semantics), `TokioStorage`.
//! - `fieldbus`: `DriveLink` trait and the drive's command and feedback frames.
//! - `framing`: length-delimited postcard frames with a size limit (shared by every service).
//! - `rpc`: request/response envelopes with request ids and deadlines, `RpcClient`,
//!   `RpcServer`, `serve` (shared by every service).
//! - `resilience`: circuit breaker, retry (with `retry` as its old path), retry budget, token
//!   bucket, bulkhead — shared by every caller.
//! - `record_log`: checksummed append-only records with torn-tail recovery; `durable_server`:
//!   the batching, ack-after-sync shell shared by journal, bus and inventory.
//! - `motion`: the motion service (`MotionCore`, `run_motion`).
//! - `client`: the workload client (`run_client`).
//! - `registry`: service registry and discovery (Consul TTL checks), `gateway`: the HTTP/1.1 API
//!   gateway (hyper), `journal`: the event store, `bus`: topics, consumer groups, DLQ, outbox,
//!   `inventory`: stock with expiring reservations, `orders`: the saga orchestrator.
//!
//! Architecture invariants:
//! - No turmoil here: the simulated network and disk come in through the traits.
//! - No wall clock, no OS randomness, no threads, no hash-ordered iteration (docs/DESIGN.md §3).
//!   Shells read time from `tokio::time` (simulated under turmoil); cores get `now` passed in;
//!   randomness is a `ChaCha8Rng` handed in by the caller. `TokioStorage` and `TokioTransport`
//!   are for real runs only.
//! - No spawned tasks: every shell is one task multiplexing with `select!` (`biased;`) and
//!   `FuturesUnordered`, so it runs on a current-thread runtime, a turmoil host, or a test.
//! - Every queue, table, frame and retry loop has a named limit.
pub mod bus;
pub mod client;
pub mod durable_server;
pub mod edge;
pub mod fieldbus;
pub mod framing;
pub mod gateway;
pub mod http_workload;
pub mod inventory;
pub mod journal;
pub mod motion;
pub mod orders;
pub mod record_log;
pub mod registry;
pub mod resilience;
pub mod retry;
pub mod rpc;
pub mod storage;
#[cfg(test)]
mod testing;
pub mod transport;
