//! Table-driven tests of the supervisor on its own (no plant): every (state, request) pair of
//! the transition table, every automatic transition, and every safety function at its threshold
//! (no trip) and just beyond it (trip, with the documented code and resulting state).

use control::{
    DriveState, FaultCode, Observation, RequestRejected, SafetyRequest, Setpoint, Supervisor,
    SupervisorConfig, TransitionCause,
};

const CONFIG: SupervisorConfig = SupervisorConfig {
    position_rad_min: -1.0,
    position_rad_max: 1.0,
    following_error_rad_max: 0.1,
    safely_limited_speed_rad_per_s: 0.5,
    stop_deceleration_rad_per_s2: 10.0,
    stop_time_s_max: 0.5,
    standstill_velocity_rad_per_s: 0.01,
    command_timeout_s: 0.05,
    winding_temperature_c_max: 75.0,
    feedback_invalid_s_max: 0.01,
    feedback_period_s: 1e-3,
    position_resolution_rad: 1e-3,
    velocity_resolution_rad_per_s: 0.02,
    plausible_acceleration_rad_per_s2_max: 100.0,
};

/// Time of the step that brings a fresh supervisor into the state under test.
const T0_S: f64 = 1.0;
/// Control period used by the tests.
const DT_S: f64 = 1e-3;
/// "Just beyond" a threshold.
const BEYOND: f64 = 1e-9;

/// At rest at the origin, everything nominal.
fn nominal() -> Observation {
    Observation {
        setpoint: Setpoint::at_rest(0.0),
        position_rad: 0.0,
        velocity_rad_per_s: 0.0,
        winding_temperature_c: 40.0,
        feedback_valid: true,
        feedback_sample_index: 0,
        command_link_ok: true,
    }
}

/// Moving at 1 rad/s through the origin (so an SS1 ramp lasts 0.1 s).
fn moving() -> Observation {
    let setpoint = Setpoint {
        position_rad: 0.0,
        velocity_rad_per_s: 1.0,
        acceleration_rad_per_s2: 0.0,
    };
    Observation {
        setpoint,
        velocity_rad_per_s: 1.0,
        ..nominal()
    }
}

/// A supervisor that has just entered `state` at `T0_S` through its usual path.
fn supervisor_in(state: DriveState) -> Supervisor {
    let mut s = Supervisor::new(CONFIG);
    assert_eq!(s.step(T0_S - 2.0 * DT_S, &nominal()), None);
    let moving = moving();
    match state {
        DriveState::SwitchOnDisabled => {}
        DriveState::ReadyToSwitchOn => {
            s.request(T0_S, SafetyRequest::Shutdown, &nominal().setpoint)
                .unwrap();
        }
        DriveState::OperationEnabled => {
            s.request(T0_S, SafetyRequest::Enable, &nominal().setpoint)
                .unwrap();
        }
        DriveState::QuickStopActive => {
            s.request(T0_S - DT_S, SafetyRequest::Enable, &nominal().setpoint)
                .unwrap();
            s.request(T0_S, SafetyRequest::QuickStop, &moving.setpoint)
                .unwrap();
        }
        DriveState::FaultReactionActive => {
            s.request(T0_S - DT_S, SafetyRequest::Enable, &nominal().setpoint)
                .unwrap();
            let hot = Observation {
                winding_temperature_c: 80.0,
                ..moving
            };
            s.step(T0_S, &hot).expect("over-temperature trips");
        }
        DriveState::Fault => {
            s.request(T0_S - DT_S, SafetyRequest::Enable, &nominal().setpoint)
                .unwrap();
            let lagging = Observation {
                position_rad: 0.5,
                ..nominal()
            };
            s.step(T0_S, &lagging).expect("following error trips");
        }
    }
    assert_eq!(s.state(), state, "setup reaches {state:?}");
    s
}

/// What a request does: moves to a state, is ignored, or is refused.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    To(DriveState),
    Ignored,
    Refused,
}

#[test]
fn every_state_and_request_follows_the_transition_table() {
    // Goal: the transition table in the supervisor's module docs, row by row, including the
    // ignored and refused cells. Method: a fresh supervisor per cell, brought into the row's
    // state, then the request; compare the outcome, the resulting state and the torque.
    use DriveState::*;
    use Outcome::*;
    use SafetyRequest::*;
    let table: [(DriveState, [Outcome; 6]); 6] = [
        //                      Shutdown               Enable                 Disable                QuickStop              SafeTorqueOff          FaultReset
        (
            SwitchOnDisabled,
            [
                To(ReadyToSwitchOn),
                To(OperationEnabled),
                Ignored,
                Ignored,
                Ignored,
                Ignored,
            ],
        ),
        (
            ReadyToSwitchOn,
            [
                Ignored,
                To(OperationEnabled),
                To(SwitchOnDisabled),
                To(SwitchOnDisabled),
                To(SwitchOnDisabled),
                Ignored,
            ],
        ),
        (
            OperationEnabled,
            [
                To(ReadyToSwitchOn),
                Ignored,
                To(SwitchOnDisabled),
                To(QuickStopActive),
                To(SwitchOnDisabled),
                Ignored,
            ],
        ),
        (
            QuickStopActive,
            [
                Refused,
                Refused,
                To(SwitchOnDisabled),
                Ignored,
                To(SwitchOnDisabled),
                Ignored,
            ],
        ),
        (
            FaultReactionActive,
            [Refused, Refused, Refused, Ignored, To(Fault), Refused],
        ),
        (
            Fault,
            [
                Refused,
                Refused,
                Ignored,
                Ignored,
                Ignored,
                To(SwitchOnDisabled),
            ],
        ),
    ];
    let requests = [
        Shutdown,
        Enable,
        Disable,
        QuickStop,
        SafeTorqueOff,
        FaultReset,
    ];
    for (from, outcomes) in table {
        for (request, expected) in requests.into_iter().zip(outcomes) {
            let mut s = supervisor_in(from);
            let fault_before = s.fault();
            let t = T0_S + DT_S;
            let result = s.request(t, request, &moving().setpoint);
            let outcome = match result {
                Ok(Some(transition)) => {
                    assert_eq!((transition.from, transition.to), (from, s.state()));
                    assert_eq!(transition.cause, TransitionCause::Request(request));
                    assert_eq!(transition.t_s, t);
                    To(s.state())
                }
                Ok(None) => Ignored,
                Err(RequestRejected::NotAllowedIn { state }) => {
                    assert_eq!(state, from);
                    Refused
                }
                Err(other) => panic!("{from:?} + {request:?}: unexpected refusal {other:?}"),
            };
            assert_eq!(outcome, expected, "{from:?} + {request:?}");
            if matches!(outcome, Ignored | Refused) {
                assert_eq!(
                    s.state(),
                    from,
                    "{from:?} + {request:?} leaves the state alone"
                );
            }
            // Torque is on exactly in the three torque states; faults survive everything but a reset.
            assert_eq!(
                s.state().torque_enabled(),
                matches!(
                    s.state(),
                    OperationEnabled | QuickStopActive | FaultReactionActive
                )
            );
            if request == FaultReset && from == Fault {
                assert_eq!(s.fault(), None, "fault reset clears the fault");
            } else {
                assert_eq!(
                    s.fault(),
                    fault_before,
                    "{from:?} + {request:?} keeps the fault record"
                );
            }
        }
    }
}

#[test]
fn speed_limit_requests_are_accepted_in_every_state() {
    // Goal: SLS can be switched on and off in every state without a state change.
    for state in DriveState::ALL {
        let mut s = supervisor_in(state);
        assert!(!s.sls_active());
        assert_eq!(
            s.request(T0_S + DT_S, SafetyRequest::LimitSpeed, &Setpoint::default()),
            Ok(None)
        );
        assert!(s.sls_active());
        assert_eq!(
            s.request(
                T0_S + DT_S,
                SafetyRequest::ReleaseSpeedLimit,
                &Setpoint::default()
            ),
            Ok(None)
        );
        assert!(!s.sls_active());
        assert_eq!(s.state(), state);
    }
}

#[test]
fn enable_is_refused_when_it_would_fault_at_once() {
    // Goal: Enable is refused (state unchanged) before any feedback, with invalid feedback,
    // over temperature and outside the soft limits; it is accepted exactly at the limits.
    let mut fresh = Supervisor::new(CONFIG);
    assert_eq!(
        fresh.request(0.0, SafetyRequest::Enable, &Setpoint::default()),
        Err(RequestRejected::NoValidFeedback)
    );
    let cases: [(Observation, Option<RequestRejected>); 7] = [
        (
            Observation {
                feedback_valid: false,
                ..nominal()
            },
            Some(RequestRejected::NoValidFeedback),
        ),
        (
            Observation {
                position_rad: f64::NAN,
                ..nominal()
            },
            Some(RequestRejected::NoValidFeedback),
        ),
        (
            Observation {
                winding_temperature_c: 75.0 + BEYOND * 1e3,
                ..nominal()
            },
            Some(RequestRejected::OverTemperature),
        ),
        (
            Observation {
                winding_temperature_c: 75.0,
                ..nominal()
            },
            None,
        ),
        (
            Observation {
                position_rad: 1.0 + BEYOND,
                ..nominal()
            },
            Some(RequestRejected::OutsideSoftLimits),
        ),
        (
            Observation {
                position_rad: -1.0 - BEYOND,
                ..nominal()
            },
            Some(RequestRejected::OutsideSoftLimits),
        ),
        (
            Observation {
                position_rad: 1.0,
                setpoint: Setpoint::at_rest(1.0),
                ..nominal()
            },
            None,
        ),
    ];
    for (observation, expected) in cases {
        let mut s = Supervisor::new(CONFIG);
        s.step(0.0, &observation);
        let result = s.request(0.0, SafetyRequest::Enable, &observation.setpoint);
        match expected {
            Some(rejection) => {
                assert_eq!(result, Err(rejection), "{observation:?}");
                assert_eq!(s.state(), DriveState::SwitchOnDisabled);
            }
            None => assert_eq!(s.state(), DriveState::OperationEnabled, "{observation:?}"),
        }
    }
}

/// One safety function: how to push its monitored value to `value`, its limit, and what a trip
/// must produce.
struct Monitor {
    name: &'static str,
    /// Observation with the monitored quantity at `value` (SLS monitors need SLS on).
    observe: fn(f64) -> Observation,
    limit: f64,
    /// Direction in which the value exceeds the limit.
    beyond: f64,
    sls: bool,
    code: FaultCode,
    state_after: DriveState,
}

fn monitors() -> [Monitor; 6] {
    use DriveState::*;
    [
        Monitor {
            name: "over-temperature",
            observe: |value| Observation {
                winding_temperature_c: value,
                ..nominal()
            },
            limit: CONFIG.winding_temperature_c_max,
            beyond: 1e3 * BEYOND,
            sls: false,
            code: FaultCode::OverTemperature,
            state_after: FaultReactionActive,
        },
        Monitor {
            name: "following error (lagging)",
            observe: |value| Observation {
                setpoint: Setpoint::at_rest(value),
                ..nominal()
            },
            limit: CONFIG.following_error_rad_max,
            beyond: BEYOND,
            sls: false,
            code: FaultCode::FollowingError,
            state_after: Fault,
        },
        Monitor {
            name: "following error (leading)",
            observe: |value| Observation {
                position_rad: value,
                ..nominal()
            },
            limit: CONFIG.following_error_rad_max,
            beyond: BEYOND,
            sls: false,
            code: FaultCode::FollowingError,
            state_after: Fault,
        },
        Monitor {
            name: "soft position limit (max)",
            observe: |value| Observation {
                position_rad: value,
                setpoint: Setpoint::at_rest(value),
                ..nominal()
            },
            limit: CONFIG.position_rad_max,
            beyond: BEYOND,
            sls: false,
            code: FaultCode::SoftPositionLimit,
            state_after: FaultReactionActive,
        },
        Monitor {
            name: "soft position limit (min)",
            observe: |value| Observation {
                position_rad: value,
                setpoint: Setpoint::at_rest(value),
                ..nominal()
            },
            limit: CONFIG.position_rad_min,
            beyond: -BEYOND,
            sls: false,
            code: FaultCode::SoftPositionLimit,
            state_after: FaultReactionActive,
        },
        Monitor {
            name: "safely limited speed",
            observe: |value| Observation {
                velocity_rad_per_s: -value,
                ..nominal()
            },
            limit: CONFIG.safely_limited_speed_rad_per_s,
            beyond: BEYOND,
            sls: true,
            code: FaultCode::SafelyLimitedSpeed,
            state_after: FaultReactionActive,
        },
    ]
}

#[test]
fn every_value_monitor_trips_just_beyond_its_limit_and_not_at_it() {
    // Goal: each value monitor allows its limit exactly and trips just beyond it, with the
    // documented fault code, value, limit and resulting state. Method: an enabled supervisor
    // stepped once at the limit (no transition), then once just beyond.
    for m in monitors() {
        let mut s = supervisor_in(DriveState::OperationEnabled);
        if m.sls {
            s.request(T0_S, SafetyRequest::LimitSpeed, &Setpoint::default())
                .unwrap();
        }
        assert_eq!(
            s.step(T0_S + DT_S, &(m.observe)(m.limit)),
            None,
            "{}: at the limit",
            m.name
        );
        assert_eq!(s.state(), DriveState::OperationEnabled, "{}", m.name);
        let value = m.limit + m.beyond;
        let t = T0_S + 2.0 * DT_S;
        let transition = s
            .step(t, &(m.observe)(value))
            .unwrap_or_else(|| panic!("{}: beyond the limit", m.name));
        assert_eq!(
            transition.cause,
            TransitionCause::Fault(m.code),
            "{}",
            m.name
        );
        assert_eq!(s.state(), m.state_after, "{}", m.name);
        let fault = s.fault().expect("fault recorded");
        assert_eq!(
            (fault.code, fault.t_s, fault.limit),
            (m.code, t, m.limit),
            "{}",
            m.name
        );
        assert!(
            fault.value.abs() > fault.limit.abs(),
            "{}: value {}",
            m.name,
            fault.value
        );
        assert!(!fault.reason().is_empty());
    }
}

#[test]
fn safely_limited_speed_is_not_monitored_while_inactive() {
    // Goal: SLS only trips while active. Method: twice the SLS limit with SLS off, then on.
    let mut s = supervisor_in(DriveState::OperationEnabled);
    let fast = Observation {
        velocity_rad_per_s: 2.0 * CONFIG.safely_limited_speed_rad_per_s,
        ..nominal()
    };
    assert_eq!(s.step(T0_S + DT_S, &fast), None);
    s.request(T0_S + DT_S, SafetyRequest::LimitSpeed, &Setpoint::default())
        .unwrap();
    assert_eq!(
        s.step(T0_S + 2.0 * DT_S, &fast).map(|t| t.cause),
        Some(TransitionCause::Fault(FaultCode::SafelyLimitedSpeed))
    );
}

#[test]
fn watchdogs_trip_just_after_their_timeout_and_not_at_it() {
    // Goal: the communication-loss watchdog and the feedback-loss timer allow exactly their
    // timeout and trip just after it. Method: the link (feedback) goes silent (invalid) at
    // t1; steps at t1 + timeout and at t1 + timeout + 1 µs.
    struct Timer {
        name: &'static str,
        silent: Observation,
        timeout_s: f64,
        code: FaultCode,
        state_after: DriveState,
    }
    let timers = [
        Timer {
            name: "communication loss",
            silent: Observation {
                command_link_ok: false,
                ..nominal()
            },
            timeout_s: CONFIG.command_timeout_s,
            code: FaultCode::CommunicationLoss,
            state_after: DriveState::FaultReactionActive,
        },
        Timer {
            name: "feedback lost",
            silent: Observation {
                feedback_valid: false,
                position_rad: 0.7,
                ..nominal()
            },
            timeout_s: CONFIG.feedback_invalid_s_max,
            code: FaultCode::FeedbackLost,
            state_after: DriveState::Fault,
        },
    ];
    for timer in timers {
        let mut s = supervisor_in(DriveState::OperationEnabled);
        // The last good sample is at t1 - dt; the first silent one at t1.
        let t1 = T0_S + 0.25;
        let mut t = T0_S;
        while t < t1 - DT_S / 2.0 {
            assert_eq!(s.step(t, &nominal()), None);
            t += DT_S;
        }
        let last_good = t - DT_S;
        let first_silent = t;
        // The watchdog counts from the last good command, the feedback timer from the first
        // invalid sample.
        let since = if timer.code == FaultCode::CommunicationLoss {
            last_good
        } else {
            first_silent
        };
        assert_eq!(s.step(first_silent, &timer.silent), None, "{}", timer.name);
        assert_eq!(
            s.step(since + timer.timeout_s, &timer.silent),
            None,
            "{}: at the timeout",
            timer.name
        );
        let trip_t = since + timer.timeout_s + 1e-6;
        let transition = s
            .step(trip_t, &timer.silent)
            .unwrap_or_else(|| panic!("{}: past the timeout", timer.name));
        assert_eq!(
            transition.cause,
            TransitionCause::Fault(timer.code),
            "{}",
            timer.name
        );
        assert_eq!(s.state(), timer.state_after, "{}", timer.name);
        let fault = s.fault().unwrap();
        assert!(
            (fault.value - (timer.timeout_s + 1e-6)).abs() < 1e-9,
            "{}: {fault:?}",
            timer.name
        );
    }
}

#[test]
fn non_finite_feedback_trips_at_once() {
    // Goal: a NaN or infinite feedback value marked valid (or a NaN temperature) cuts torque in
    // the same step: FeedbackNotFinite, state Fault.
    let cases = [
        Observation {
            position_rad: f64::NAN,
            ..nominal()
        },
        Observation {
            velocity_rad_per_s: f64::INFINITY,
            ..nominal()
        },
        Observation {
            winding_temperature_c: f64::NAN,
            ..nominal()
        },
    ];
    for observation in cases {
        let mut s = supervisor_in(DriveState::OperationEnabled);
        let transition = s.step(T0_S + DT_S, &observation).expect("trips");
        assert_eq!(
            transition.cause,
            TransitionCause::Fault(FaultCode::FeedbackNotFinite)
        );
        assert_eq!(s.state(), DriveState::Fault);
    }
}

#[test]
fn motion_monitors_are_silent_while_feedback_is_invalid() {
    // Goal: a frozen position during a dropout does not trip following error or soft limits;
    // only the feedback-loss timer runs. Method: invalid feedback far beyond both limits for
    // exactly the allowed dropout.
    let mut s = supervisor_in(DriveState::OperationEnabled);
    let frozen = Observation {
        feedback_valid: false,
        position_rad: 5.0,
        ..nominal()
    };
    assert_eq!(s.step(T0_S + DT_S, &frozen), None);
    assert_eq!(
        s.step(T0_S + DT_S + CONFIG.feedback_invalid_s_max, &frozen),
        None
    );
    assert_eq!(s.state(), DriveState::OperationEnabled);
}

#[test]
fn ss1_ends_in_torque_off_at_standstill_or_at_the_stop_time() {
    // Goal: the SS1 automatic transitions. Quick stop: ramp done and standstill → switch on
    // disabled; not at standstill when the stop time is up → Fault(StopTimeExceeded). Fault
    // reaction: standstill → Fault keeping the original fault. Method: supervisors in the
    // stopping states (ramp 0.1 s from 1 rad/s at 10 rad/s²), stepped with chosen speeds.
    use DriveState::*;
    let still = nominal();
    let creeping = Observation {
        velocity_rad_per_s: 2.0 * CONFIG.standstill_velocity_rad_per_s,
        ..nominal()
    };
    let ramp_end = T0_S + 0.1;

    // Before the ramp ends: no torque off even at standstill.
    let mut s = supervisor_in(QuickStopActive);
    assert_eq!(s.step(ramp_end - DT_S, &still), None);
    // After it: at standstill → SwitchOnDisabled.
    let t = s.step(ramp_end + DT_S, &still).expect("stop completes");
    assert_eq!(
        (t.to, t.cause),
        (SwitchOnDisabled, TransitionCause::StopComplete)
    );
    assert_eq!(s.fault(), None);

    // Creeping until the stop time is up: torque off anyway, recorded as a fault.
    let mut s = supervisor_in(QuickStopActive);
    assert_eq!(
        s.step(T0_S + CONFIG.stop_time_s_max, &creeping),
        None,
        "at the stop time"
    );
    let t = s
        .step(T0_S + CONFIG.stop_time_s_max + 1e-6, &creeping)
        .expect("stop time up");
    assert_eq!((t.to, t.cause), (Fault, TransitionCause::StopTimeElapsed));
    assert_eq!(s.fault().map(|f| f.code), Some(FaultCode::StopTimeExceeded));

    // Fault reaction ends in Fault with the original fault.
    let mut s = supervisor_in(FaultReactionActive);
    let t = s.step(ramp_end + DT_S, &still).expect("stop completes");
    assert_eq!((t.to, t.cause), (Fault, TransitionCause::StopComplete));
    assert_eq!(s.fault().map(|f| f.code), Some(FaultCode::OverTemperature));
    let mut s = supervisor_in(FaultReactionActive);
    let t = s
        .step(T0_S + CONFIG.stop_time_s_max + 1e-6, &creeping)
        .expect("stop time up");
    assert_eq!((t.to, t.cause), (Fault, TransitionCause::StopTimeElapsed));
    assert_eq!(s.fault().map(|f| f.code), Some(FaultCode::OverTemperature));
}

#[test]
fn ss1_ramp_decelerates_from_the_setpoint_at_the_configured_rate() {
    // Goal: the SS1 reference starts at the setpoint of the request and decelerates at
    // stop_deceleration to rest at v0²/(2d) further on. Method: sample the quick-stop ramp.
    let s = supervisor_in(DriveState::QuickStopActive);
    let start = s.stop_setpoint(T0_S).unwrap();
    assert_eq!((start.position_rad, start.velocity_rad_per_s), (0.0, 1.0));
    let mid = s.stop_setpoint(T0_S + 0.05).unwrap();
    assert!((mid.velocity_rad_per_s - 0.5).abs() < 1e-12);
    assert_eq!(
        mid.acceleration_rad_per_s2,
        -CONFIG.stop_deceleration_rad_per_s2
    );
    let end = s.stop_setpoint(T0_S + 0.2).unwrap();
    assert_eq!(end.velocity_rad_per_s, 0.0);
    assert!((end.position_rad - 0.05).abs() < 1e-12);
    assert_eq!(
        supervisor_in(DriveState::OperationEnabled).stop_setpoint(T0_S),
        None
    );
}

#[test]
fn faults_during_a_stop_escalate_or_join_it() {
    // Goal: during a quick stop an STO-reaction fault (following error) cuts torque at once,
    // while an SS1-reaction monitor (over-temperature) is not evaluated: the stop already
    // answers it and its ramp is unchanged. During a fault reaction an STO fault escalates to
    // Fault, keeping the first fault as the recorded one.
    use DriveState::*;
    let lagging = Observation {
        position_rad: 0.5,
        ..moving()
    };
    let hot = Observation {
        winding_temperature_c: 90.0,
        ..moving()
    };

    let mut s = supervisor_in(QuickStopActive);
    assert_eq!(s.step(T0_S + DT_S, &lagging).map(|t| t.to), Some(Fault));
    assert_eq!(s.fault().map(|f| f.code), Some(FaultCode::FollowingError));

    let mut s = supervisor_in(QuickStopActive);
    let ramp_before = s.stop_setpoint(T0_S + 0.05);
    // Over-temperature is not an STO fault and SS1 is already running: no transition.
    assert_eq!(s.step(T0_S + DT_S, &hot), None);
    assert_eq!(s.stop_setpoint(T0_S + 0.05), ramp_before);

    let mut s = supervisor_in(FaultReactionActive);
    assert_eq!(s.step(T0_S + DT_S, &lagging).map(|t| t.to), Some(Fault));
    assert_eq!(
        s.fault().map(|f| f.code),
        Some(FaultCode::OverTemperature),
        "first fault kept"
    );
}

#[test]
fn fault_codes_are_stable_and_complete() {
    // Goal: the fault-code table of the supervisor docs, pinned: codes never change meaning.
    // Method: every code round-trips through from_code, has a reason and the documented
    // reaction.
    use control::FaultReaction::*;
    let pinned = [
        (0x4310, FaultCode::OverTemperature, SafeStop1),
        (0x7320, FaultCode::FeedbackLost, SafeTorqueOff),
        (0x7321, FaultCode::FeedbackNotFinite, SafeTorqueOff),
        (0x7322, FaultCode::FeedbackImplausible, SafeTorqueOff),
        (0x8130, FaultCode::CommunicationLoss, SafeStop1),
        (0x8400, FaultCode::SafelyLimitedSpeed, SafeStop1),
        (0x8611, FaultCode::FollowingError, SafeTorqueOff),
        (0x8612, FaultCode::SoftPositionLimit, SafeStop1),
        (0x8613, FaultCode::StopTimeExceeded, SafeTorqueOff),
    ];
    assert_eq!(pinned.len(), FaultCode::ALL.len());
    for (code, fault, reaction) in pinned {
        assert_eq!(fault.code(), code);
        assert_eq!(FaultCode::from_code(code), Some(fault));
        assert_eq!(fault.reaction(), reaction);
        assert!(!fault.reason().is_empty() && !fault.name().is_empty());
    }
    assert_eq!(FaultCode::from_code(0), None);
}

/// `supervisor_in(OperationEnabled)` fed fresh samples (index counting up from 1) at rest.
fn enabled_with_samples() -> (Supervisor, u32) {
    let mut s = supervisor_in(DriveState::OperationEnabled);
    for k in 1..=3 {
        let sample = Observation {
            feedback_sample_index: k,
            ..nominal()
        };
        assert_eq!(s.step(T0_S + f64::from(k) * DT_S, &sample), None);
    }
    (s, 3)
}

#[test]
fn encoder_plausibility_trips_on_a_step_no_motion_can_make() {
    // Goal: a fresh sample whose position step is off its velocities' prediction by more than
    // 2 q + v_q·Δt + a·Δt² is FeedbackImplausible with STO; just inside the bound is not.
    // Method: CONFIG's bound at one period is 2e-3 + 2e-5 + 1e-4 = 2.12e-3 rad.
    let bound = 2.0 * CONFIG.position_resolution_rad
        + CONFIG.velocity_resolution_rad_per_s * DT_S
        + CONFIG.plausible_acceleration_rad_per_s2_max * DT_S * DT_S;
    let (mut s, k) = enabled_with_samples();
    let inside = Observation {
        position_rad: bound * 0.99,
        feedback_sample_index: k + 1,
        setpoint: Setpoint::at_rest(bound * 0.99),
        ..nominal()
    };
    assert_eq!(s.step(T0_S + 4.0 * DT_S, &inside), None);
    let (mut s, k) = enabled_with_samples();
    let beyond = Observation {
        position_rad: bound + BEYOND * 10.0,
        feedback_sample_index: k + 1,
        ..nominal()
    };
    let transition = s.step(T0_S + 4.0 * DT_S, &beyond).expect("trips");
    assert_eq!(transition.to, DriveState::Fault);
    assert_eq!(
        transition.cause,
        TransitionCause::Fault(FaultCode::FeedbackImplausible)
    );
}

#[test]
fn encoder_plausibility_accepts_real_motion_gaps_and_held_samples() {
    // Goal: no false trip on motion the velocities explain, across lost samples (a gap of n
    // indices is n periods), or on a held sample (same index, any value: not judged).
    // Method: 1 rad/s with exact positions, a gap of 5 samples, then a held sample far off.
    let (mut s, mut k) = enabled_with_samples();
    let mut t_s = T0_S + 4.0 * DT_S;
    let mut position = 0.0;
    for gap in [1u32, 1, 5, 1, 3] {
        k += gap;
        position += 1.0 * f64::from(gap) * DT_S;
        let o = Observation {
            position_rad: position,
            velocity_rad_per_s: 1.0,
            setpoint: Setpoint::at_rest(position),
            feedback_sample_index: k,
            ..nominal()
        };
        assert_eq!(s.step(t_s, &o), None, "gap {gap}");
        t_s += DT_S;
    }
    let held = Observation {
        position_rad: position + 0.05,
        velocity_rad_per_s: 1.0,
        setpoint: Setpoint::at_rest(position),
        feedback_sample_index: k,
        ..nominal()
    };
    assert_eq!(s.step(t_s, &held), None);
    assert_eq!(s.state(), DriveState::OperationEnabled);
}

#[test]
fn an_offset_encoder_is_not_enabled_until_the_offset_reverts() {
    // Goal: after an implausible step the discrepancy refuses Enable (NoValidFeedback), even
    // after FaultReset, until a step back within two counts; then Enable is accepted.
    // Method: a 0.01 rad glitch at rest, reset, try to enable, glitch back, enable.
    let (mut s, k) = enabled_with_samples();
    let glitched = |index| Observation {
        position_rad: 0.01,
        feedback_sample_index: index,
        ..nominal()
    };
    s.step(T0_S + 4.0 * DT_S, &glitched(k + 1)).expect("trips");
    assert!(s.feedback_implausible());
    s.request(
        T0_S + 5.0 * DT_S,
        SafetyRequest::FaultReset,
        &nominal().setpoint,
    )
    .unwrap();
    s.step(T0_S + 6.0 * DT_S, &glitched(k + 2));
    assert_eq!(
        s.request(
            T0_S + 6.0 * DT_S,
            SafetyRequest::Enable,
            &nominal().setpoint
        ),
        Err(RequestRejected::NoValidFeedback)
    );
    let back = Observation {
        feedback_sample_index: k + 3,
        ..nominal()
    };
    s.step(T0_S + 7.0 * DT_S, &back);
    assert!(!s.feedback_implausible());
    assert!(
        s.request(
            T0_S + 7.0 * DT_S,
            SafetyRequest::Enable,
            &nominal().setpoint
        )
        .is_ok()
    );
    assert_eq!(s.state(), DriveState::OperationEnabled);
}
