//! Goal: operator moves through the gateway (`POST /axes/{axis}/move`) work end to end, and two
//! moves of one operator never share a lease: the second waits its turn (409 `axis_leased`)
//! instead of renewing the first's lease and then releasing it under the running move.
//! Method: one cell, a disabled axis, two moves of consumer `line-1` 200 ms apart (the first
//! takes about 0.7 s); the run's trace is read.

use sim::run::{RunOptions, run};
use sim::scenario::{Scenario, Source};
use sim::trace::TraceEvent;

const SCENARIO: &str = r#"# Goal: two operator moves of one consumer, 200 ms apart, on a disabled axis.
name = "operator-moves"
duration_s = 8.0
settle_s = 3.0
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
orders_instances = 1

[[services.gateway.key]]
key = "op-7f3a9c"
consumer = "line-1"
role = "operator"

[[services.inventory.part]]
name = "bracket"
stock = 5

[[workload.request]]
at_s = 1.0
method = "POST"
path = "/axes/a/move"
api_key = "op-7f3a9c"
idempotency_key = "move-1"
body = '{"target_rad": 1.0}'

[[workload.request]]
at_s = 1.2
method = "POST"
path = "/axes/a/move"
api_key = "op-7f3a9c"
idempotency_key = "move-2"
body = '{"target_rad": -1.0}'
"#;

fn answered<'a>(events: &'a [TraceEvent], status: &str) -> Vec<&'a TraceEvent> {
    events
        .iter()
        .filter(|e| e.name == "probe_answered" && e.field("status") == Some(status))
        .collect()
}

#[test]
fn an_operators_second_move_waits_for_the_first_instead_of_sharing_its_lease() {
    let scenario = Scenario::from_source(&Source::new("operator.toml", SCENARIO)).unwrap();
    let outcome = run(
        &scenario,
        scenario.seed,
        RunOptions {
            check_determinism: true,
            record_series: false,
        },
    );
    let failing: Vec<_> = outcome
        .report
        .oracles
        .iter()
        .filter(|o| !o.holds)
        .map(|o| (o.id.clone(), o.first_violation.clone()))
        .collect();
    assert!(failing.is_empty(), "{failing:?}");
    let events = outcome.trace.events();

    // The first move enabled the disabled axis and completed; the second was refused while it
    // ran, by the lease, not by the motion service's one-move-at-a-time rule.
    assert_eq!(answered(events, "200").len(), 1, "the first move completes");
    let refused = answered(events, "409");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].field("error"), Some("axis_leased"));

    // Every lease is released only once its holder's move has ended.
    let completed = events
        .iter()
        .find(|e| e.name == "move_completed")
        .expect("the first move completes");
    for released in events.iter().filter(|e| e.name == "lease_released") {
        assert!(
            released.t >= completed.t,
            "{released} while the move was still running (it completed at {completed})"
        );
    }
    let holders: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|e| e.name == "lease_granted")
        .filter_map(|e| e.field("holder"))
        .collect();
    assert_eq!(
        holders.len(),
        1,
        "only the first move held the lease: {holders:?}"
    );
}
