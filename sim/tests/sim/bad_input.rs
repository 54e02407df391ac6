//! Goal: every kind of bad scenario is rejected with the file, the line and column, and a
//! message that says what is wrong and how to fix it; nothing bad is silently accepted.
//! Method: one `check(text, expected)` per case over a valid base scenario.

use sim::scenario::{Scenario, Source};

const BASE: &str = r#"# Goal: a valid base that each case breaks in one place.
name = "bad"
duration_s = 5.0
settle_s = 1.0

[axis.x]
velocity_deg_per_s_max = 180.0
acceleration_deg_per_s2_max = 720.0
jerk_deg_per_s3_max = 7200.0
position_deg_min = -180.0
position_deg_max = 180.0

[axis.x.plant]
preset = "xm430-w350"

[[workload.move]]
at_s = 0.5
axis = "x"
target_deg = 90.0
"#;

/// Loads `text` and asserts it fails with a message containing every one of `expected`.
fn check(text: &str, expected: &[&str]) {
    let error = match Scenario::from_source(&Source::new("case.toml", text)) {
        Ok(_) => panic!("accepted a bad scenario:\n{text}"),
        Err(e) => e.to_string(),
    };
    for fragment in expected {
        assert!(
            error.contains(fragment),
            "error {error:?} lacks {fragment:?}"
        );
    }
}

#[test]
fn the_base_scenario_is_valid() {
    Scenario::from_source(&Source::new("case.toml", BASE)).unwrap();
}

#[test]
fn malformed_toml_names_line_and_column() {
    check(
        &BASE.replace("settle_s = 1.0", "settle_s = = 1.0"),
        &["case.toml:4:12:"],
    );
}

#[test]
fn unknown_keys_are_rejected_where_they_stand() {
    check(
        &BASE.replace("settle_s = 1.0", "settle_s = 1.0\nsetle = 2"),
        &["case.toml:5:1:", "unknown field `setle`"],
    );
    check(
        &BASE.replace(
            "preset = \"xm430-w350\"",
            "preset = \"xm430-w350\"\nresistance = 3.0",
        ),
        &["case.toml:15:1:", "unknown field `resistance`"],
    );
    check(
        &BASE.replace("target_deg = 90.0", "target_deg = 90.0\nspeed = 1"),
        &["case.toml:20:1:", "unknown field `speed`"],
    );
}

#[test]
fn negative_and_contradictory_durations_are_rejected() {
    check(
        &BASE.replace("duration_s = 5.0", "duration_s = -5.0"),
        &["case.toml:3:", "`duration_s` must be in (0,"],
    );
    check(
        &BASE.replace("settle_s = 1.0", "settle_s = 9.0"),
        &["case.toml:4:", "`settle_s`", "shorter than `duration_s`"],
    );
}

#[test]
fn faults_must_name_hosts_and_axes_that_exist() {
    let fault = |body: &str| format!("{BASE}\n[[fault]]\nat_s = 1.0\n{body}\n");
    check(
        &fault("kind = \"crash\"\nhost = \"motion-7\""),
        &["case.toml:21:1:", "unknown host `motion-7`", "motion-1"],
    );
    check(
        &fault("kind = \"load-step\"\naxis = \"y\"\ntorque_nm = 1.0"),
        &["unknown axis `y`", "the axes are x"],
    );
    check(
        &fault("kind = \"meteor\""),
        &["unknown fault kind `meteor`", "partition"],
    );
    check(&fault("kind = \"partition\""), &["needs `between"]);
    check(
        &fault("kind = \"crash\"\nhost = \"motion-1\"\nlatency_ms = 5.0"),
        &["does not use `latency_ms`"],
    );
    check(
        &fault("kind = \"crash\"\nhost = \"motion-1\"\nfor_s = 9.0"),
        &["`for_s` must be positive and end by"],
    );
    check(
        &fault("kind = \"restart\"\nhost = \"motion-1\"\nfor_s = 1.0"),
        &["instantaneous"],
    );
}

// The messages the kind table (`sim/src/fault/kind.rs`) gives every kind alike: a magnitude
// out of its row's range or not whole is reported at the value; an unknown key lists every
// kind's magnitude key; an instant kind's field list has no `for_s`.
#[test]
fn fault_magnitudes_and_fields_follow_the_kind_table() {
    let fault = |body: &str| format!("{BASE}\n[[fault]]\nat_s = 1.0\n{body}\n");
    check(
        &fault("kind = \"latency\"\nbetween = [\"client-1\", \"motion-1\"]\nlatency_ms = -1.0"),
        &[
            "case.toml:25:14:",
            "[[fault]] `latency`: `latency_ms` must be in [0, 60000], not -1",
        ],
    );
    check(
        &fault("kind = \"encoder-glitch\"\naxis = \"x\"\noffset_counts = 3.5"),
        &[
            "case.toml:25:17:",
            "`offset_counts` must be a whole number of counts, not 3.5",
        ],
    );
    check(
        &fault("kind = \"encoder-glitch\"\naxis = \"x\"\noffset_counts = 99999999999"),
        &["case.toml:25:17:", "must be in [-2147483648, 2147483647]"],
    );
    check(
        &fault("kind = \"encoder-glitch\"\naxis = \"x\""),
        &[
            "case.toml:21:1:",
            "[[fault]] `encoder-glitch` needs `offset_counts`",
        ],
    );
    check(
        &fault("kind = \"bus-under-voltage\"\naxis = \"x\"\nvolt = 10.0"),
        &[
            "case.toml:25:1:",
            "unknown field `volt`",
            "`volts`",
            "`latency_ms`",
        ],
    );
    check(
        &fault("kind = \"disk-lost-writes\"\nhost = \"motion-1\"\nfraction = 0.5"),
        &["does not use `fraction`; its fields are at_s, host"],
    );
    check(
        &fault("kind = \"partition-oneway\"\nfrom = \"motion-1\"\nto = \"motion-1\""),
        &["case.toml:21:1:", "`from` and `to` both name `motion-1`"],
    );
    check(
        &format!("{BASE}\n[chaos]\n[chaos.per_min]\nmeteor = 1.0\n"),
        &[
            "unknown fault kind `meteor` in `per_min`",
            "bus-under-voltage",
        ],
    );
}

#[test]
fn network_links_must_name_two_hosts_of_the_cell() {
    let link = |body: &str| format!("{BASE}\n[[network.link]]\n{body}\n");
    Scenario::from_source(&Source::new(
        "case.toml",
        link("between = [\"client-1\", \"motion-1\"]\nlatency_ms_min = 5.0\nlatency_ms_max = 9.0"),
    ))
    .unwrap();
    check(
        &link("between = [\"client-1\", \"gateway\"]"),
        &["case.toml:21:1:", "unknown host `gateway`"],
    );
    check(&link("between = [\"client-1\"]"), &["needs `between"]);
    check(
        &link("between = [\"client-1\", \"motion-1\"]\nlatency_ms_min = 9.0\nlatency_ms_max = 5.0"),
        &["`latency_ms_min` (9)"],
    );
    check(
        &link("between = [\"client-1\", \"motion-1\"]\nloss = 2.0"),
        &["`loss` is a probability"],
    );
}

#[test]
fn contradictory_limits_are_rejected_with_a_fix() {
    check(
        &BASE.replace("position_deg_min = -180.0", "position_deg_min = 200.0"),
        &[
            "case.toml:6:1:",
            "`position_deg_min` (200) must be below `position_deg_max` (180)",
        ],
    );
    check(
        &BASE.replace(
            "acceleration_deg_per_s2_max = 720.0",
            "acceleration_deg_per_s2_max = 100.0",
        ),
        &[
            "`stop_time_s` (0.5) is shorter than",
            "raise `stop_time_s` or the acceleration",
        ],
    );
    check(
        &BASE.replace("target_deg = 90.0", "target_deg = 270.0"),
        &["case.toml:16:1:", "outside axis `x`'s soft limits"],
    );
    check(
        &BASE.replace(
            "position_deg_max = 180.0",
            "position_deg_max = 180.0\ncurrent_a_max = 50.0",
        ),
        &["`current_a_max` (50 A) must be positive and at most the drive's limit"],
    );
    check(
        &BASE.replace(
            "velocity_deg_per_s_max = 180.0",
            "velocity_deg_per_s_max = 1000.0\nstop_time_s = 5.0",
        ),
        &["faster than the motor's no-load speed"],
    );
    check(
        &BASE.replace("[axis.x]", "[axis.x]\ncontrol_rate_hz = 3000"),
        &["not a whole number of microseconds"],
    );
}

#[test]
fn plant_parameter_errors_point_at_the_plant_table() {
    check(
        &BASE.replace("preset = \"xm430-w350\"", "preset = \"xm999\""),
        &["case.toml:13:1:", "xm999", "xm430-w350"],
    );
}

/// The base with the order path: the line numbers below count from it.
fn with_services(extra: &str) -> String {
    format!(
        "{BASE}
[services]

[[services.gateway.key]]
key = \"k\"
consumer = \"line\"
role = \"operator\"

[[services.inventory.part]]
name = \"bolt\"
stock = 10
{extra}"
    )
}

#[test]
fn the_order_paths_tables_name_their_table_key_and_line() {
    Scenario::from_source(&Source::new("case.toml", with_services(""))).unwrap();
    check(
        &with_services("\n[services.inventory]\nreservation_ttl_s = -1.0\n"),
        &[
            "[services.inventory]: `reservation_ttl_s` must be a positive number of seconds",
            "not -1",
        ],
    );
    check(
        &with_services("\n[services.gateway]\nbreaker_calls_min = 50\nbreaker_window_calls = 10\n"),
        &["[services.gateway]: `breaker_calls_min` (50) exceeds `breaker_window_calls` (10)"],
    );
    check(
        &with_services(
            "\n[workload.orders]\ncount = 3\ninterval_ms = 100\nparts = [\"nut\"]\ntargets_deg = [10.0]\napi_key = \"k\"\n",
        ),
        &["case.toml:32:1:", "[workload.orders]: part `nut` is not in"],
    );
    check(
        &BASE.replace(
            "[[workload.move]]",
            "[[workload.request]]\nat_s = 1.0\nmethod = \"GET\"\npath = \"/axes/x\"\n\n[[workload.move]]",
        ),
        &["case.toml:16:1:", "add `[services]` to run it"],
    );
}

#[test]
fn a_tick_is_a_whole_number_of_control_periods_that_divides_the_run() {
    let with_tick = |tick: &str| format!("{BASE}\n[network]\ntick_ms = {tick}\n");
    let tick = |text: &str| {
        Scenario::from_source(&Source::new("case.toml", text))
            .unwrap()
            .tick()
    };
    assert_eq!(tick(BASE), std::time::Duration::from_millis(1));
    assert_eq!(tick(&with_tick("4")), std::time::Duration::from_millis(4));
    check(
        &with_tick("2.5"),
        &[
            "case.toml:22:11:",
            "`network.tick_ms` (2.5) must be a whole number of the shortest control period (1 ms)",
        ],
    );
    check(&with_tick("0"), &["case.toml:22:11:", "1 to 20 of them"]);
    check(&with_tick("25"), &["is 25 control periods; at most 20"]);
    check(
        &with_tick("3"),
        &["`duration_s` (5 s) is not a whole number of `network.tick_ms` (3 ms) ticks"],
    );
}
