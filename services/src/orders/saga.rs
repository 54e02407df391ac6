//! The saga as a pure state machine: events in, commands out.
//!
//! Owns the steps (`Step`), the events of a saga's stream (`SagaEvent`, their encoding and
//! event ids), the state folded from them (`Saga`), what to do next (`Action`, `Command`) and how
//! a participant's answer becomes the next event (`Saga::decide`). No I/O, no time, no
//! randomness: the shell runs the commands and appends the events.
//!
//! The saga (Garcia-Molina & Salem; Richardson's orchestration, see
//! `docs/reference/pattern-semantics.md` §8):
//!
//! ```text
//! reserve part ─► lease axis ─► move ─► commit part ─► release axis ─► completed
//! (compensatable) (compensatable) (pivot) (retriable)    (retriable)
//!      ▲               ▲           │
//!      └─ release part ◄─ release lease ◄─ a step up to the pivot failed ─► compensated
//! ```
//!
//! Rules, each enforced by `apply` (an event that breaks one is refused, never folded in):
//! - Steps run in order; each success is one `StepSucceeded` event.
//! - Only a step up to and including the pivot may fail (`StepFailed`). Then every
//!   compensatable step up to and including the failed one is compensated, in reverse order
//!   (`StepCompensated`), then `Compensated` ends the saga. The failed step is compensated too:
//!   its outcome may be unknown (a timeout), and each compensation is harmless when the step had
//!   no effect (inventory keeps a tombstone, a lease release by its holder is a no-op when not
//!   held).
//! - After the pivot succeeded nothing is compensated: commit and release are retried until
//!   they succeed. A commit that finds its pieces gone is recorded as a shortfall, not a failure.
//! - `OwnerChanged` hands the saga to another orchestrator instance; only the owner appends
//!   step events (the shell makes sure through expected versions).
//!
//! The fold is the same function for the live saga and for a replay, so a resumed saga is the
//! saga that was running (ES5 for sagas).

use serde::{Deserialize, Serialize};

use super::protocol::{OrderId, OrderSpec, SagaView};
use crate::inventory::PartId;
use crate::journal::{EventData, EventId, RecordedEvent, StreamName};
use crate::motion::AxisName;

/// Prefix of every saga's stream name; the rest is the order id.
pub const SAGA_STREAM_PREFIX: &str = "saga-";

const EVENT_ID_CHECKSUM: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);

/// The saga's steps, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Step {
    ReservePart,
    LeaseAxis,
    Move,
    CommitPart,
    ReleaseAxis,
}

impl Step {
    /// The step whose success is the point of no return.
    pub const PIVOT: Step = Step::Move;

    /// The first step.
    pub const FIRST: Step = Step::ReservePart;

    /// The step after this one.
    pub fn next(self) -> Option<Step> {
        match self {
            Step::ReservePart => Some(Step::LeaseAxis),
            Step::LeaseAxis => Some(Step::Move),
            Step::Move => Some(Step::CommitPart),
            Step::CommitPart => Some(Step::ReleaseAxis),
            Step::ReleaseAxis => None,
        }
    }

    /// Whether the step has a compensation.
    pub fn is_compensatable(self) -> bool {
        matches!(self, Step::ReservePart | Step::LeaseAxis)
    }

    /// A stable name for traces.
    pub fn kind(self) -> &'static str {
        match self {
            Step::ReservePart => "reserve_part",
            Step::LeaseAxis => "lease_axis",
            Step::Move => "move",
            Step::CommitPart => "commit_part",
            Step::ReleaseAxis => "release_axis",
        }
    }
}

/// One event of a saga's stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SagaEvent {
    /// The first event: the order, and the instance that owns the saga.
    Started { order: OrderSpec, owner: String },
    /// A step succeeded. `token`: the lease's fencing token (lease, and a move that had to
    /// re-acquire the lease). `shortfall`: a commit that found its pieces gone.
    StepSucceeded {
        step: Step,
        token: Option<u64>,
        shortfall: bool,
    },
    /// A step up to the pivot failed: compensation begins.
    StepFailed { step: Step, reason: String },
    /// The compensation of `step` is done.
    StepCompensated { step: Step },
    /// Another instance owns the saga from here on.
    OwnerChanged { owner: String },
    /// Every step succeeded.
    Completed,
    /// Every compensation ran.
    Compensated,
}

impl SagaEvent {
    /// The event's kind in the journal.
    pub fn kind(&self) -> &'static str {
        match self {
            SagaEvent::Started { .. } => "saga_started",
            SagaEvent::StepSucceeded { .. } => "step_succeeded",
            SagaEvent::StepFailed { .. } => "step_failed",
            SagaEvent::StepCompensated { .. } => "step_compensated",
            SagaEvent::OwnerChanged { .. } => "owner_changed",
            SagaEvent::Completed => "saga_completed",
            SagaEvent::Compensated => "saga_compensated",
        }
    }

    /// The event's kind as the journal stores it: the kind, and for a step's event its step
    /// (`step_succeeded:reserve_part`), so that the journal's own record of a saga (its trace
    /// of appends) says what each event was without decoding it.
    pub fn journal_kind(&self) -> String {
        match self {
            SagaEvent::StepSucceeded { step, .. }
            | SagaEvent::StepFailed { step, .. }
            | SagaEvent::StepCompensated { step } => format!("{}:{}", self.kind(), step.kind()),
            _ => self.kind().to_owned(),
        }
    }

    /// The event as the journal stores it, at `version` of the saga's stream, written by
    /// instance `instance`.
    pub fn to_event_data(&self, order: OrderId, version: u64, instance: u16) -> EventData {
        let data = postcard::to_stdvec(self).expect("a saga event always serializes");
        EventData {
            id: event_id(order, version, instance, &data),
            kind: self.journal_kind(),
            data,
        }
    }

    /// Decodes an event read from the journal.
    pub fn from_recorded(event: &RecordedEvent) -> Result<SagaEvent, SagaError> {
        crate::framing::decode(&event.data).map_err(|error| SagaError::Undecodable {
            version: event.version,
            reason: error.to_string(),
        })
    }
}

/// The journal event id of a saga event. The start's id depends on the order id alone, so a
/// re-sent order (to either instance) is a duplicate append. Every other id mixes in the
/// version, the writing instance and the content: a re-send of the same event is a duplicate,
/// while a different event for the same version (another instance's, or a changed decision
/// after a restart) can never pass for one and meets the expected-version check instead.
pub fn event_id(order: OrderId, version: u64, instance: u16, data: &[u8]) -> EventId {
    let high = u128::from(order.0) << 64;
    if version == 0 {
        return EventId(high);
    }
    let mut digest = EVENT_ID_CHECKSUM.digest();
    digest.update(&version.to_be_bytes());
    digest.update(&instance.to_be_bytes());
    digest.update(data);
    // Never 0: that is the start's id.
    let low = digest.finalize().max(1);
    EventId(high | u128::from(low))
}

/// Prefix of an orders instance's heartbeat stream; the rest is the instance name. It starts
/// with `SAGA_STREAM_PREFIX`, so one subscription follows sagas and heartbeats.
pub const HEARTBEAT_STREAM_PREFIX: &str = "saga-owner-";

/// The heartbeat stream of an orders instance.
pub fn heartbeat_stream(instance: &str) -> StreamName {
    StreamName::new(format!("{HEARTBEAT_STREAM_PREFIX}{instance}"))
}

/// The instance of a heartbeat stream's name, if it is one.
pub fn instance_of_stream(stream: &StreamName) -> Option<&str> {
    stream.as_str().strip_prefix(HEARTBEAT_STREAM_PREFIX)
}

/// The event of an instance's `version`-th heartbeat: its id depends on the instance and the
/// version only, so a re-send is a duplicate and a restarted instance continues the stream.
pub fn heartbeat_event(instance: &str, version: u64) -> EventData {
    let mut digest = EVENT_ID_CHECKSUM.digest();
    digest.update(instance.as_bytes());
    // The instance's checksum in the high bits: no saga event id (order id there) is one unless
    // an order id equals it, which the journal would refuse as a reused id, never merge.
    let high = u128::from(digest.finalize()) << 64;
    EventData {
        id: EventId(high | u128::from(version)),
        kind: "instance_heartbeat".to_owned(),
        data: Vec::new(),
    }
}

/// The stream of an order's saga.
pub fn stream_name(order: OrderId) -> StreamName {
    StreamName::new(format!("{SAGA_STREAM_PREFIX}{}", order.0))
}

/// The order id of a saga stream's name, if it is one.
pub fn order_of_stream(stream: &StreamName) -> Option<OrderId> {
    let digits = stream.as_str().strip_prefix(SAGA_STREAM_PREFIX)?;
    digits.parse().ok().map(OrderId)
}

/// Why events do not make a saga.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SagaError {
    #[error("event {version} does not decode: {reason}")]
    Undecodable { version: u64, reason: String },
    #[error("a saga stream must start with Started")]
    NotStarted,
    /// The event breaks a rule of the saga (see the module docs).
    #[error("event {version} ({kind}) is illegal: {reason}")]
    Illegal {
        version: u64,
        kind: &'static str,
        reason: String,
    },
}

/// Where a saga stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Running forward; `next` is the step to run (`None`: all done, `Completed` to record).
    Forward {
        next: Option<Step>,
    },
    /// A step failed; `remaining` are the steps still to compensate, in the order they run
    /// (empty: `Compensated` to record).
    Compensating {
        failed: Step,
        remaining: Vec<Step>,
    },
    Completed,
    Compensated,
}

/// What a participant is asked to do, with what it needs beyond the order.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    Reserve {
        part: PartId,
        quantity: u32,
    },
    AcquireLease {
        axis: AxisName,
    },
    /// The pivot; `token` is the lease's token as last recorded.
    Move {
        axis: AxisName,
        target_rad: f64,
        token: Option<u64>,
    },
    Commit,
    ReleaseLease {
        axis: AxisName,
        token: Option<u64>,
    },
    /// Compensation of `ReservePart`.
    CompensateReserve,
    /// Compensation of `LeaseAxis`: release whatever lease the order's holder has on the axis.
    /// No token: the recorded one may be older than the lease (a move that failed after it
    /// re-acquired the lease records no token), so the release goes by holder.
    CompensateLease {
        axis: AxisName,
    },
}

impl Command {
    /// A stable name for traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::Reserve { .. } => "reserve",
            Command::AcquireLease { .. } => "acquire_lease",
            Command::Move { .. } => "move",
            Command::Commit => "commit",
            Command::ReleaseLease { .. } => "release_lease",
            Command::CompensateReserve => "compensate_reserve",
            Command::CompensateLease { .. } => "compensate_lease",
        }
    }
}

/// What the shell does next for a saga.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Run the command, then append `decide(outcome)`.
    Run(Command),
    /// Append this event (no participant involved).
    Record(SagaEvent),
    /// The saga is over.
    Finished,
}

/// A participant's definitive answer to a command (transient failures never get here: the
/// shell retries them).
#[derive(Clone, Debug, PartialEq)]
pub enum StepOutcome {
    /// Done; a lease (or a move that re-acquired it) reports its token.
    Done { token: Option<u64> },
    /// A commit found too few pieces.
    Shortfall,
    /// The step did not and will not happen.
    Failed { reason: String },
}

/// A saga folded from its events.
#[derive(Clone, Debug, PartialEq)]
pub struct Saga {
    pub order: OrderSpec,
    pub owner: String,
    /// The version of the last event folded in (the stream's head).
    pub version: u64,
    pub phase: Phase,
    /// The lease's fencing token, as last recorded.
    pub token: Option<u64>,
    pub shortfall: bool,
}

impl Saga {
    /// The saga a `Started` event begins.
    pub fn start(order: OrderSpec, owner: impl Into<String>) -> (Saga, SagaEvent) {
        let owner = owner.into();
        let event = SagaEvent::Started {
            order: order.clone(),
            owner: owner.clone(),
        };
        let saga = Saga {
            order,
            owner,
            version: 0,
            phase: Phase::Forward {
                next: Some(Step::FIRST),
            },
            token: None,
            shortfall: false,
        };
        (saga, event)
    }

    /// Folds a whole stream (events in version order from 0).
    pub fn replay<'a>(events: impl IntoIterator<Item = &'a SagaEvent>) -> Result<Saga, SagaError> {
        let mut events = events.into_iter();
        let Some(SagaEvent::Started { order, owner }) = events.next() else {
            return Err(SagaError::NotStarted);
        };
        let (mut saga, _) = Saga::start(order.clone(), owner.clone());
        for event in events {
            saga.apply(event)?;
        }
        Ok(saga)
    }

    /// Folds a stream read from the journal.
    pub fn replay_recorded(events: &[RecordedEvent]) -> Result<Saga, SagaError> {
        let decoded = events
            .iter()
            .map(SagaEvent::from_recorded)
            .collect::<Result<Vec<_>, _>>()?;
        Saga::replay(&decoded)
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Completed | Phase::Compensated)
    }

    /// Whether the pivot succeeded (from then on nothing is compensated).
    pub fn is_past_pivot(&self) -> bool {
        match &self.phase {
            Phase::Forward { next } => next.is_none_or(|next| next > Step::PIVOT),
            Phase::Completed => true,
            Phase::Compensating { .. } | Phase::Compensated => false,
        }
    }

    /// Folds in the next event (version `self.version + 1`), or refuses it.
    pub fn apply(&mut self, event: &SagaEvent) -> Result<(), SagaError> {
        let version = self.version + 1;
        let illegal = |reason: String| SagaError::Illegal {
            version,
            kind: event.kind(),
            reason,
        };
        let phase = match (&self.phase, event) {
            (_, SagaEvent::Started { .. }) => {
                return Err(illegal("a saga starts once".to_owned()));
            }
            (Phase::Completed | Phase::Compensated, _) => {
                return Err(illegal("the saga is over".to_owned()));
            }
            (_, SagaEvent::OwnerChanged { owner }) => {
                self.owner = owner.clone();
                self.phase.clone()
            }
            (
                Phase::Forward { next: Some(next) },
                SagaEvent::StepSucceeded {
                    step,
                    token,
                    shortfall,
                },
            ) if next == step => {
                if *step == Step::LeaseAxis && token.is_none() {
                    return Err(illegal("a lease succeeds with a token".to_owned()));
                }
                if *shortfall && *step != Step::CommitPart {
                    return Err(illegal("only a commit has a shortfall".to_owned()));
                }
                if token.is_some() {
                    self.token = *token;
                }
                self.shortfall |= *shortfall;
                Phase::Forward { next: step.next() }
            }
            (Phase::Forward { next: Some(next) }, SagaEvent::StepFailed { step, .. })
                if next == step =>
            {
                if *step > Step::PIVOT {
                    return Err(illegal(format!(
                        "{} is after the pivot: it is retried, never failed",
                        step.kind()
                    )));
                }
                let remaining: Vec<Step> = [Step::LeaseAxis, Step::ReservePart]
                    .into_iter()
                    .filter(|compensatable| compensatable <= step)
                    .collect();
                Phase::Compensating {
                    failed: *step,
                    remaining,
                }
            }
            (Phase::Compensating { failed, remaining }, SagaEvent::StepCompensated { step })
                if remaining.first() == Some(step) =>
            {
                Phase::Compensating {
                    failed: *failed,
                    remaining: remaining[1..].to_vec(),
                }
            }
            (Phase::Forward { next: None }, SagaEvent::Completed) => Phase::Completed,
            (Phase::Compensating { remaining, .. }, SagaEvent::Compensated)
                if remaining.is_empty() =>
            {
                Phase::Compensated
            }
            (phase, _) => {
                return Err(illegal(format!("not allowed in {phase:?}")));
            }
        };
        assert!(
            !(self.is_past_pivot() && matches!(phase, Phase::Compensating { .. })),
            "no compensation after the pivot"
        );
        self.phase = phase;
        self.version = version;
        Ok(())
    }

    /// What to do next.
    pub fn next_action(&self) -> Action {
        let order = &self.order;
        match &self.phase {
            Phase::Forward { next: None } => Action::Record(SagaEvent::Completed),
            Phase::Forward { next: Some(step) } => Action::Run(match step {
                Step::ReservePart => Command::Reserve {
                    part: order.part.clone(),
                    quantity: order.quantity,
                },
                Step::LeaseAxis => Command::AcquireLease {
                    axis: order.axis.clone(),
                },
                Step::Move => Command::Move {
                    axis: order.axis.clone(),
                    target_rad: order.target_rad,
                    token: self.token,
                },
                Step::CommitPart => Command::Commit,
                Step::ReleaseAxis => Command::ReleaseLease {
                    axis: order.axis.clone(),
                    token: self.token,
                },
            }),
            Phase::Compensating { remaining, .. } => match remaining.first() {
                None => Action::Record(SagaEvent::Compensated),
                Some(Step::ReservePart) => Action::Run(Command::CompensateReserve),
                Some(Step::LeaseAxis) => Action::Run(Command::CompensateLease {
                    axis: order.axis.clone(),
                }),
                Some(other) => unreachable!("{} has no compensation", other.kind()),
            },
            Phase::Completed | Phase::Compensated => Action::Finished,
        }
    }

    /// The event recording `outcome` of the command `next_action` returned. Panics on an
    /// outcome the command cannot have (a bug of the participant adapter): a failure after the
    /// pivot, a failed compensation, a shortfall of anything but a commit.
    pub fn decide(&self, outcome: StepOutcome) -> SagaEvent {
        match (&self.phase, outcome) {
            (Phase::Forward { next: Some(step) }, StepOutcome::Done { token }) => {
                SagaEvent::StepSucceeded {
                    step: *step,
                    token,
                    shortfall: false,
                }
            }
            (
                Phase::Forward {
                    next: Some(Step::CommitPart),
                },
                StepOutcome::Shortfall,
            ) => SagaEvent::StepSucceeded {
                step: Step::CommitPart,
                token: None,
                shortfall: true,
            },
            (Phase::Forward { next: Some(step) }, StepOutcome::Failed { reason })
                if *step <= Step::PIVOT =>
            {
                SagaEvent::StepFailed {
                    step: *step,
                    reason,
                }
            }
            (Phase::Compensating { remaining, .. }, StepOutcome::Done { .. })
                if !remaining.is_empty() =>
            {
                SagaEvent::StepCompensated { step: remaining[0] }
            }
            (phase, outcome) => panic!("outcome {outcome:?} is impossible in {phase:?}"),
        }
    }

    /// The saga as `OrderStatus` shows it.
    pub fn view(&self) -> SagaView {
        let (phase, step) = match &self.phase {
            Phase::Forward { next } => ("running", next.map(|s| s.kind().to_owned())),
            Phase::Compensating { remaining, .. } => (
                "compensating",
                remaining.first().map(|s| s.kind().to_owned()),
            ),
            Phase::Completed => ("completed", None),
            Phase::Compensated => ("compensated", None),
        };
        SagaView {
            phase: phase.to_owned(),
            step,
            owner: self.owner.clone(),
            events: self.version + 1,
            shortfall: self.shortfall,
        }
    }
}
