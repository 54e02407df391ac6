//! Unit tests of the saga state machine, without a runtime: drive sagas with chosen and with
//! random participant outcomes, and check the saga rules (SG1, SG2 at the level of one saga),
//! replay (ES5) and event ids.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::protocol::{OrderId, OrderSpec};
use super::saga::{
    Action, Command, Phase, Saga, SagaError, SagaEvent, Step, StepOutcome, event_id,
};
use crate::inventory::PartId;
use crate::motion::AxisName;

fn order(id: u64) -> OrderSpec {
    OrderSpec {
        order_id: OrderId(id),
        part: PartId::new("bolt"),
        quantity: 2,
        axis: AxisName::new("x"),
        target_rad: 1.5,
    }
}

/// Runs a saga to its end, answering each command with `answer`; returns its events.
fn run(mut answer: impl FnMut(&Command) -> StepOutcome) -> Vec<SagaEvent> {
    let (mut saga, started) = Saga::start(order(1), "orders-1");
    let mut events = vec![started];
    for _ in 0..20 {
        let event = match saga.next_action() {
            Action::Finished => return events,
            Action::Record(event) => event,
            Action::Run(command) => saga.decide(answer(&command)),
        };
        saga.apply(&event).expect("decided events are legal");
        events.push(event);
    }
    panic!("a saga ends within 20 events: {events:?}");
}

fn done() -> StepOutcome {
    StepOutcome::Done { token: None }
}

fn failed() -> StepOutcome {
    StepOutcome::Failed {
        reason: "test".to_owned(),
    }
}

/// The steps compensated, in order.
fn compensated(events: &[SagaEvent]) -> Vec<Step> {
    events
        .iter()
        .filter_map(|event| match event {
            SagaEvent::StepCompensated { step } => Some(*step),
            _ => None,
        })
        .collect()
}

#[test]
fn the_happy_path_runs_every_step_in_order_and_carries_the_token() {
    // Goal: the forward path and the commands' contents. Method: answer every command with
    // success (the lease with token 7) and check the command sequence, the token the move and
    // the release get, and the final events.
    let mut commands = Vec::new();
    let events = run(|command| {
        commands.push(command.clone());
        match command {
            Command::AcquireLease { .. } => StepOutcome::Done { token: Some(7) },
            _ => done(),
        }
    });
    let axis = AxisName::new("x");
    assert_eq!(
        commands,
        vec![
            Command::Reserve {
                part: PartId::new("bolt"),
                quantity: 2
            },
            Command::AcquireLease { axis: axis.clone() },
            Command::Move {
                axis: axis.clone(),
                target_rad: 1.5,
                token: Some(7)
            },
            Command::Commit,
            Command::ReleaseLease {
                axis,
                token: Some(7)
            },
        ]
    );
    assert_eq!(events.last(), Some(&SagaEvent::Completed));
    assert_eq!(events.len(), 7, "started, five steps, completed");
}

#[test]
fn a_failure_up_to_the_pivot_compensates_in_reverse_including_the_failed_step() {
    // Goal: backward recovery for each step that may fail. Method: fail reserve, then lease,
    // then the move; check the compensations run in reverse order and the saga ends
    // Compensated; the move itself has no compensation.
    let fail_at = |failing: &'static str| {
        run(move |command| match command {
            command if command.kind() == failing => failed(),
            Command::AcquireLease { .. } => StepOutcome::Done { token: Some(3) },
            _ => done(),
        })
    };
    let reserve = fail_at("reserve");
    assert_eq!(compensated(&reserve), vec![Step::ReservePart]);
    assert_eq!(reserve.last(), Some(&SagaEvent::Compensated));
    let lease = fail_at("acquire_lease");
    assert_eq!(
        compensated(&lease),
        vec![Step::LeaseAxis, Step::ReservePart]
    );
    let moved = fail_at("move");
    assert_eq!(
        compensated(&moved),
        vec![Step::LeaseAxis, Step::ReservePart]
    );
    assert_eq!(moved.last(), Some(&SagaEvent::Compensated));
    // The lease compensation names the order's axis (it releases by holder, whatever token
    // the lease has by then).
    let mut compensations = Vec::new();
    run(|command| match command {
        Command::Move { .. } => failed(),
        Command::AcquireLease { .. } => StepOutcome::Done { token: Some(9) },
        Command::CompensateLease { axis } => {
            compensations.push(axis.clone());
            done()
        }
        _ => done(),
    });
    assert_eq!(compensations, vec![AxisName::new("x")]);
}

#[test]
fn nothing_is_compensated_after_the_pivot() {
    // Goal: SG2 at the source: after a successful move neither the state machine nor a forged
    // event can start compensation. Method: bring a saga past the move; a failure event for the
    // commit is refused by `apply`, and `decide` refuses to turn a failure into an event.
    let (mut saga, _) = Saga::start(order(1), "orders-1");
    for event in [
        SagaEvent::StepSucceeded {
            step: Step::ReservePart,
            token: None,
            shortfall: false,
        },
        SagaEvent::StepSucceeded {
            step: Step::LeaseAxis,
            token: Some(1),
            shortfall: false,
        },
        SagaEvent::StepSucceeded {
            step: Step::Move,
            token: None,
            shortfall: false,
        },
    ] {
        saga.apply(&event).unwrap();
    }
    assert!(saga.is_past_pivot());
    let forged = SagaEvent::StepFailed {
        step: Step::CommitPart,
        reason: "forged".to_owned(),
    };
    assert!(matches!(
        saga.apply(&forged),
        Err(SagaError::Illegal { version: 4, .. })
    ));
    let forged = SagaEvent::StepCompensated {
        step: Step::LeaseAxis,
    };
    assert!(saga.apply(&forged).is_err());
    let decided = std::panic::catch_unwind(|| saga.decide(failed()));
    assert!(decided.is_err(), "a failed commit is a bug of the adapter");
    // A shortfall is recorded as a success with the flag.
    let event = saga.decide(StepOutcome::Shortfall);
    saga.apply(&event).unwrap();
    assert!(saga.shortfall);
    assert_eq!(
        saga.phase,
        Phase::Forward {
            next: Some(Step::ReleaseAxis)
        }
    );
}

#[test]
fn illegal_streams_are_refused() {
    // Goal: the fold never accepts a stream that breaks the saga's order. Method: a stream
    // without a start, a second start, a skipped step, a compensation of the wrong step, a
    // lease without token, an event after the end, and an owner change after the end.
    let started = SagaEvent::Started {
        order: order(1),
        owner: "a".to_owned(),
    };
    let succeeded = |step, token| SagaEvent::StepSucceeded {
        step,
        token,
        shortfall: false,
    };
    assert_eq!(Saga::replay(&[]), Err(SagaError::NotStarted));
    assert_eq!(
        Saga::replay(&[succeeded(Step::ReservePart, None)]),
        Err(SagaError::NotStarted)
    );
    let bad_streams: Vec<Vec<SagaEvent>> = vec![
        vec![started.clone(), started.clone()],
        vec![started.clone(), succeeded(Step::LeaseAxis, Some(1))],
        vec![
            started.clone(),
            succeeded(Step::ReservePart, None),
            succeeded(Step::LeaseAxis, None),
        ],
        vec![
            started.clone(),
            SagaEvent::StepFailed {
                step: Step::ReservePart,
                reason: "x".to_owned(),
            },
            SagaEvent::StepCompensated {
                step: Step::LeaseAxis,
            },
        ],
        vec![started.clone(), SagaEvent::Completed],
        vec![
            started.clone(),
            SagaEvent::StepFailed {
                step: Step::ReservePart,
                reason: "x".to_owned(),
            },
            SagaEvent::StepCompensated {
                step: Step::ReservePart,
            },
            SagaEvent::Compensated,
            SagaEvent::OwnerChanged {
                owner: "b".to_owned(),
            },
        ],
    ];
    for stream in bad_streams {
        assert!(
            matches!(Saga::replay(&stream), Err(SagaError::Illegal { .. })),
            "accepted {stream:?}"
        );
    }
}

#[test]
fn random_outcomes_always_end_completed_or_compensated_and_replay_equals_live() {
    // Goal: SG1 and SG2 for one saga under every mix of outcomes, and replay = live (ES5).
    // Method: 2000 sagas with seeded random outcomes (each step may fail or succeed; owners
    // change at random); each must end Completed or Compensated within bounds; compensation
    // only if no move succeeded, and then exactly the compensatable steps up to the failed one,
    // in reverse; the fold of the recorded events must equal the live saga.
    let mut rng = ChaCha8Rng::seed_from_u64(41);
    for id in 0..2000u64 {
        let (mut saga, started) = Saga::start(order(id), "orders-1");
        let mut events = vec![started];
        while !saga.is_finished() {
            assert!(events.len() < 20, "saga {id} does not end: {events:?}");
            let event = if rng.next_u64() % 8 == 0 {
                SagaEvent::OwnerChanged {
                    owner: format!("orders-{}", rng.next_u64() % 2 + 1),
                }
            } else {
                match saga.next_action() {
                    Action::Finished => unreachable!("not finished"),
                    Action::Record(event) => event,
                    Action::Run(command) => {
                        let may_fail = matches!(
                            command,
                            Command::Reserve { .. }
                                | Command::AcquireLease { .. }
                                | Command::Move { .. }
                        );
                        let outcome = if may_fail && rng.next_u64() % 4 == 0 {
                            failed()
                        } else if matches!(command, Command::Commit) && rng.next_u64() % 10 == 0 {
                            StepOutcome::Shortfall
                        } else if matches!(command, Command::AcquireLease { .. }) {
                            StepOutcome::Done {
                                token: Some(rng.next_u64() % 100),
                            }
                        } else {
                            done()
                        };
                        saga.decide(outcome)
                    }
                }
            };
            saga.apply(&event).unwrap();
            events.push(event);
        }
        let moved = events.iter().any(|event| {
            matches!(
                event,
                SagaEvent::StepSucceeded {
                    step: Step::Move,
                    ..
                }
            )
        });
        let failed_step = events.iter().find_map(|event| match event {
            SagaEvent::StepFailed { step, .. } => Some(*step),
            _ => None,
        });
        match saga.phase {
            Phase::Completed => assert!(moved && failed_step.is_none(), "saga {id}"),
            Phase::Compensated => {
                assert!(!moved, "saga {id}: compensated after the pivot");
                let failed_step = failed_step.expect("a compensated saga had a failure");
                let expected: Vec<Step> = [Step::LeaseAxis, Step::ReservePart]
                    .into_iter()
                    .filter(|step| *step <= failed_step)
                    .collect();
                assert_eq!(compensated(&events), expected, "saga {id}");
            }
            ref other => panic!("saga {id} ended {other:?}"),
        }
        assert_eq!(
            Saga::replay(&events).unwrap(),
            saga,
            "saga {id}: replay differs"
        );
    }
}

#[test]
fn event_ids_are_stable_for_re_sends_and_distinct_for_different_events() {
    // Goal: a re-sent event is a duplicate for the journal, any other event at the same
    // version is not, and a start depends on the order alone. Method: compare ids of equal and
    // different contents, versions, instances and orders.
    let (saga, started) = Saga::start(order(5), "orders-1");
    let other_start = SagaEvent::Started {
        order: OrderSpec {
            target_rad: 2.0,
            ..order(5)
        },
        owner: "orders-2".to_owned(),
    };
    assert_eq!(
        started.to_event_data(OrderId(5), 0, 1).id,
        other_start.to_event_data(OrderId(5), 0, 2).id,
        "a start is identified by its order"
    );
    let step = saga.decide(done());
    let id = |event: &SagaEvent, version, instance| {
        event.to_event_data(OrderId(5), version, instance).id
    };
    assert_eq!(id(&step, 1, 1), id(&step, 1, 1));
    assert_ne!(id(&step, 1, 1), id(&step, 1, 2), "another instance's event");
    assert_ne!(id(&step, 1, 1), id(&step, 2, 1), "another version");
    assert_ne!(
        id(&step, 1, 1),
        id(&SagaEvent::Completed, 1, 1),
        "another content"
    );
    assert_ne!(id(&step, 1, 1), id(&started, 0, 1));
    assert_eq!(
        id(&step, 1, 1).0 >> 64,
        5,
        "the order id is in the high bits"
    );
    assert_ne!(event_id(OrderId(5), 1, 1, &[]).0 & u128::from(u64::MAX), 0);
}
