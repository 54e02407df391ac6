//! Goal: every oracle family of the order path is evidence, because each one has been seen to
//! fail on the whole cell running in the simulator. For each family a `[planted]` switch plants
//! a known bug in a real service (a motion service that runs a retried move again, a journal
//! that acknowledges before it syncs, a bus that drops what it should dead-letter, a breaker that
//! admits while open, a gateway that retries unsafely, over-admits, ignores its bulkhead, skips
//! authorisation or omits Retry-After, a registry that discovers critical instances), and the
//! fault or workload that makes the bug matter is added; the family's oracle must report it.
//! Method: one short cell scenario (one axis, four orders through the gateway, two orders
//! instances). Each case adds a few lines. Its clean twin (the same lines without the switch)
//! must pass every oracle, determinism included, and must show in its trace that the fault
//! really reached the mechanism the switch breaks (a dead-lettering, an open breaker, a 429, ...),
//! so that the oracle holding there means something; the planted run must fail the named oracle
//! for the named reason. Seeds are pinned (the scenario's `seed`, `SEED`).

use sim::run::{RunOptions, run};
use sim::scenario::{Scenario, Source};
use sim::trace::TraceEvent;

/// The seed of every case, the base scenario's own.
const SEED: u64 = 7;

pub(super) const BASE: &str = r#"# Goal: a short run of the whole cell that each case plants one bug into.
name = "planted-cell"
duration_s = 10.0
settle_s = 4.0
seed = 7

[cell]
clients = 1
motion_hosts = 1

[axis.a]
motion_host = "motion-1"
velocity_deg_per_s_max = 180.0
acceleration_deg_per_s2_max = 720.0
jerk_deg_per_s3_max = 7200.0
position_deg_min = -180.0
position_deg_max = 180.0

[axis.a.plant]
preset = "xm430-w350"

[services]
orders_instances = 2

[[services.gateway.key]]
key = "op-7f3a9c"
consumer = "line-1"
role = "operator"

[[services.gateway.key]]
key = "view-91c2e4"
consumer = "dashboard"
role = "viewer"

[[services.inventory.part]]
name = "bracket"
stock = 50

[workload.orders]
count = 4
from_s = 1.0
interval_ms = 1000
parts = ["bracket"]
targets_deg = [30.0, -30.0]
api_key = "op-7f3a9c"
poll_interval_ms = 500
"#;

/// What the clean twin's trace must contain: proof that the case's fault reached the mechanism
/// the planted switch breaks.
struct Stressed {
    what: &'static str,
    seen: fn(&TraceEvent) -> bool,
}

/// One planted case.
struct Case {
    /// The oracle that must fail.
    oracle: &'static str,
    /// Lines added to the base: the fault and workload that make the bug matter.
    extra: &'static str,
    /// The `[planted]` key.
    switch: &'static str,
    stressed: Stressed,
    /// A piece of the violation's detail naming the planted bug's effect.
    detail: &'static str,
}

fn scenario(text: &str) -> Scenario {
    Scenario::from_source(&Source::new("planted-cell.toml", format!("{BASE}\n{text}")))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn event_is(event: &TraceEvent, host: &str, name: &str) -> bool {
    event.host == host && event.name == name
}

fn check(case: &Case) {
    let clean = run(
        &scenario(case.extra),
        SEED,
        RunOptions {
            check_determinism: true,
            record_series: false,
        },
    );
    let clean_failing: Vec<_> = clean
        .report
        .oracles
        .iter()
        .filter(|o| !o.holds)
        .map(|o| (o.id.clone(), o.first_violation.clone()))
        .collect();
    assert!(
        clean_failing.is_empty(),
        "the clean twin fails {clean_failing:?}"
    );
    assert!(
        clean.trace.events().iter().any(case.stressed.seen),
        "the clean twin never showed {}: the case does not stress what {} breaks",
        case.stressed.what,
        case.switch
    );
    let planted = run(
        &scenario(&format!(
            "{}\n[planted]\n{} = true\n",
            case.extra, case.switch
        )),
        SEED,
        RunOptions {
            check_determinism: false,
            record_series: false,
        },
    );
    let failing: Vec<_> = planted
        .report
        .oracles
        .iter()
        .filter(|o| !o.holds)
        .map(|o| o.id.as_str())
        .collect();
    let oracle = planted
        .report
        .oracles
        .iter()
        .find(|o| o.id == case.oracle)
        .unwrap_or_else(|| panic!("{} is not judged on a cell scenario", case.oracle));
    let violation = oracle.first_violation.as_ref().unwrap_or_else(|| {
        panic!(
            "{} missed the planted {}; failing: {failing:?}",
            case.oracle, case.switch
        )
    });
    assert!(
        violation.detail.contains(case.detail),
        "{} failed for another reason than the planted {}: {}",
        case.oracle,
        case.switch,
        violation.detail
    );
}

// SG3 (saga family): the saga polls its move by re-sending the same request (request id = order
// id) until the answer is final, so the first poll after the move finished is a retried request
// of a finished move; a motion service that runs it again moves twice for one order. The base
// needs no fault for this.
#[test]
fn sg3_catches_a_motion_service_that_runs_a_retried_move_again() {
    check(&Case {
        oracle: "SG3",
        extra: "",
        switch: "motion_moves_twice",
        stressed: Stressed {
            what: "a finished move requested again",
            seen: |e| {
                event_is(e, "motion-1", "move_duplicate") && e.field("outcome") == Some("completed")
            },
        },
        detail: "started again",
    });
}

// ES6 (event-sourcing family): the journal's disk refuses writes for 1 s and the journal crashes
// in the middle of it. Appends decided then never reach the disk; a correct journal has not
// answered them, the planted one acknowledged them at once, and the crash takes them back.
// (The simulated disk has no latency: without failing writes, the sync follows the append in
// the same instant and no crash can fall between an early ack and the sync.)
#[test]
fn es6_catches_a_journal_that_acknowledges_before_sync() {
    check(&Case {
        oracle: "ES6",
        extra: r#"
[[fault]]
at_s = 3.0
kind = "disk-io-error"
host = "journal"
for_s = 1.0

[[fault]]
at_s = 3.6
kind = "crash"
host = "journal"
for_s = 1.0
"#,
        switch: "journal_acks_before_sync",
        stressed: Stressed {
            what: "a journal write failing while appends were decided",
            seen: |e| event_is(e, "journal", "state_write_failed"),
        },
        detail: "lost",
    });
}

// MQ1 (bus family): the journal is cut off from both orders instances for 2 s, so the motion
// events they fetch cannot be applied and stay unacked. Each instance holds its fetched message
// while its journal append waits for the journal, so a message is delivered once per instance:
// with `max_deliver = 2` it is exhausted and a correct bus dead-letters it; the planted bus
// drops it silently.
#[test]
fn mq1_catches_a_bus_that_drops_an_exhausted_message() {
    check(&Case {
        oracle: "MQ1",
        extra: r#"
[services.bus]
ack_wait_ms = [200.0]
max_deliver = 2

[[fault]]
at_s = 1.5
kind = "partition"
between = ["journal", "orders-1"]
for_s = 2.0

[[fault]]
at_s = 1.5
kind = "partition"
between = ["journal", "orders-2"]
for_s = 2.0
"#,
        switch: "bus_drops_after_max_deliver",
        stressed: Stressed {
            what: "a message dead-lettered after max-deliver",
            seen: |e| {
                event_is(e, "bus", "bus_dead_lettered") && e.field("reason") == Some("max_deliver")
            },
        },
        detail: "neither acked nor dead-lettered",
    });
}

// CB2 (breaker family): for 3 s every link from the gateway to the orders instances is slower
// than the gateway's attempt timeout; the order client's submissions and polls time out, the
// breaker opens, and the calls that follow while it is open must be rejected without calling.
#[test]
fn cb2_catches_a_breaker_that_admits_while_open() {
    check(&Case {
        oracle: "CB2",
        extra: r#"
[services.gateway]
attempt_timeout_ms = 300.0
breaker_window_calls = 10
breaker_calls_min = 4
breaker_failure_rate_percent = 50.0
breaker_slow_call_ms = 250.0
breaker_slow_call_rate_percent = 80.0
breaker_open_wait_ms = 2000.0
breaker_half_open_calls = 2

[[fault]]
at_s = 2.0
kind = "latency"
between = ["gateway", "orders-1"]
latency_ms = 400.0
for_s = 3.0

[[fault]]
at_s = 2.0
kind = "latency"
between = ["gateway", "orders-2"]
latency_ms = 400.0
for_s = 3.0
"#,
        switch: "breaker_admits_while_open",
        stressed: Stressed {
            what: "the breaker opening",
            seen: |e| event_is(e, "gateway", "breaker_transition") && e.field("to") == Some("open"),
        },
        detail: "admitted while open",
    });
}

// R3 (retry family): for 1.5 s the orders instances answer slower than the gateway's attempt
// timeout. Requests without an Idempotency-Key meet these timeouts — the order client's status
// polls (GET) and a raw order POST — and must not be retried; the planted gateway retries them.
#[test]
fn r3_catches_a_gateway_that_retries_requests_without_idempotency_key() {
    check(&Case {
        oracle: "R3",
        extra: r#"
[services.gateway]
attempt_timeout_ms = 300.0

[[workload.request]]
at_s = 2.5
method = "POST"
path = "/orders"
api_key = "op-7f3a9c"
body = '{"order_id": 9001, "part": "bracket", "quantity": 1, "axis": "a", "target_rad": 0.1}'

[[fault]]
at_s = 2.0
kind = "latency"
between = ["gateway", "orders-1"]
latency_ms = 400.0
for_s = 1.5

[[fault]]
at_s = 2.0
kind = "latency"
between = ["gateway", "orders-2"]
latency_ms = 400.0
for_s = 1.5
"#,
        switch: "gateway_retries_unsafe",
        stressed: Stressed {
            what: "a request without idempotency key timing out once, unretried",
            seen: |e| {
                event_is(e, "gateway", "http_request")
                    && e.field("status") == Some("504")
                    && e.field("attempts") == Some("1")
            },
        },
        detail: "without idempotency key",
    });
}

/// Six reads by the dashboard within 50 ms against a bucket of 3 tokens refilled one per 500 ms:
/// the last ones must be answered 429.
const BURST: &str = r#"
[services.gateway]
rate_limit_tokens_max = 3
rate_limit_tokens_per_fill = 1
rate_limit_fill_interval_ms = 500.0

[[workload.request]]
at_s = 2.00
method = "GET"
path = "/inventory/bracket"
api_key = "view-91c2e4"

[[workload.request]]
at_s = 2.01
method = "GET"
path = "/inventory/bracket"
api_key = "view-91c2e4"

[[workload.request]]
at_s = 2.02
method = "GET"
path = "/inventory/bracket"
api_key = "view-91c2e4"

[[workload.request]]
at_s = 2.03
method = "GET"
path = "/inventory/bracket"
api_key = "view-91c2e4"

[[workload.request]]
at_s = 2.04
method = "GET"
path = "/inventory/bracket"
api_key = "view-91c2e4"

[[workload.request]]
at_s = 2.05
method = "GET"
path = "/inventory/bracket"
api_key = "view-91c2e4"
"#;

fn answered_429(e: &TraceEvent) -> bool {
    event_is(e, "gateway", "http_request") && e.field("status") == Some("429")
}

// RL1: more requests than the dashboard's bucket holds; the planted bucket admits them anyway.
#[test]
fn rl1_catches_a_token_bucket_that_over_admits() {
    check(&Case {
        oracle: "RL1",
        extra: BURST,
        switch: "rate_limit_over_admits",
        stressed: Stressed {
            what: "a request answered 429",
            seen: answered_429,
        },
        detail: "consumer dashboard admitted",
    });
}

// GW2: the same burst; the planted gateway answers its 429s without Retry-After.
#[test]
fn gw2_catches_a_429_without_retry_after() {
    check(&Case {
        oracle: "GW2",
        extra: BURST,
        switch: "gateway_omits_retry_after",
        stressed: Stressed {
            what: "a request answered 429 (with Retry-After)",
            seen: |e| answered_429(e) && e.field("retry_after_s").is_some(),
        },
        detail: "without Retry-After",
    });
}

// BH1: four reads of the inventory at once while the inventory answers 100 ms late, against a
// bulkhead of one call and a queue of one; the planted bulkhead lets them all through.
#[test]
fn bh1_catches_a_bulkhead_that_ignores_its_limit() {
    check(&Case {
        oracle: "BH1",
        extra: r#"
[services.gateway]
bulkhead_concurrency_max = 1
bulkhead_queue_max = 1
bulkhead_queue_wait_ms = 50.0

[[fault]]
at_s = 1.8
kind = "latency"
between = ["gateway", "inventory"]
latency_ms = 100.0
for_s = 1.0

[[workload.request]]
at_s = 2.0
method = "GET"
path = "/inventory/bracket"
api_key = "view-91c2e4"

[[workload.request]]
at_s = 2.0
method = "GET"
path = "/inventory/bracket"
api_key = "view-91c2e4"

[[workload.request]]
at_s = 2.0
method = "GET"
path = "/inventory/bracket"
api_key = "view-91c2e4"

[[workload.request]]
at_s = 2.0
method = "GET"
path = "/inventory/bracket"
api_key = "view-91c2e4"
"#,
        switch: "bulkhead_ignores_limit",
        stressed: Stressed {
            what: "a call rejected by the full bulkhead",
            seen: |e| event_is(e, "gateway", "bulkhead_rejected"),
        },
        detail: "calls in flight, limit 1",
    });
}

// GW1: the dashboard (a viewer) tries to place an order; a correct gateway answers 403, the
// planted one forwards it to the orders service.
#[test]
fn gw1_catches_a_gateway_that_forwards_a_viewers_post() {
    check(&Case {
        oracle: "GW1",
        extra: r#"
[[workload.request]]
at_s = 2.0
method = "POST"
path = "/orders"
api_key = "view-91c2e4"
body = '{"order_id": 9003, "part": "bracket", "quantity": 1, "axis": "a", "target_rad": 0.1}'
"#,
        switch: "gateway_skips_authorisation",
        stressed: Stressed {
            what: "the viewer's POST answered 403",
            seen: |e| {
                event_is(e, "gateway", "http_request")
                    && e.field("method") == Some("POST")
                    && e.field("status") == Some("403")
            },
        },
        detail: "viewer dashboard's POST reached a backend",
    });
}

// SR2 (registry family): orders-1 is cut off from the registry for 3 s while the gateway keeps
// discovering the orders instances (cache 300 ms); its heartbeats stop, it turns critical after
// its 900 ms TTL, and discovery must stop returning it; the planted registry still lists it.
#[test]
fn sr2_catches_a_registry_that_discovers_a_critical_instance() {
    check(&Case {
        oracle: "SR2",
        extra: r#"
[services.registry]
ttl_ms = 900.0
deregister_critical_after_ms = 6000.0
reap_interval_ms = 300.0
cache_ms = 300.0

[[fault]]
at_s = 1.5
kind = "partition"
between = ["orders-1", "registry"]
for_s = 3.0
"#,
        switch: "registry_discovers_critical",
        stressed: Stressed {
            what: "orders-1 turning critical",
            seen: |e| {
                event_is(e, "registry", "instance_critical")
                    && e.field("instance") == Some("orders-1")
            },
        },
        detail: "returned orders-1, critical since",
    });
}

// SR3 (registry family, the gateway's side): orders-1 is cut off from the registry for 3 s
// while the gateway keeps calling the orders instances (clients poll every 500 ms); its
// heartbeats stop and it turns critical after its 900 ms TTL. The gateway's cache lives 3 s,
// but each instance in it only until the TTL the registry gave it, so no call reaches orders-1
// once it is critical; the planted cache keeps serving it for the whole 3 s.
#[test]
fn sr3_catches_a_discovery_cache_that_serves_an_instance_past_its_ttl() {
    check(&Case {
        oracle: "SR3",
        extra: r#"
[services.registry]
ttl_ms = 900.0
deregister_critical_after_ms = 6000.0
reap_interval_ms = 300.0
cache_ms = 3000.0

[[fault]]
at_s = 1.5
kind = "partition"
between = ["orders-1", "registry"]
for_s = 3.0
"#,
        switch: "gateway_cache_ignores_ttl",
        stressed: Stressed {
            what: "orders-1 turning critical",
            seen: |e| {
                event_is(e, "registry", "instance_critical")
                    && e.field("instance") == Some("orders-1")
            },
        },
        detail: "called orders instance orders-1, critical since",
    });
}
