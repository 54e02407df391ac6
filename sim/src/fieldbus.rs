//! The fieldbus between a motion service and its drive: a medium the harness owns.
//!
//! Why not a turmoil link: turmoil delivers messages on its tick, and a fieldbus latency is tens
//! of microseconds while the world ticks at a control period or more. Stepping turmoil at 10 µs
//! to resolve that latency would cost a hundred host polls per control period. Here each frame
//! carries its exact delivery time instead; the drive applies commands at that instant inside
//! its plant step, so latency is exact at any tick. Every fault kind stays: cut (partition),
//! added latency, loss and corruption, each drawn from the axis's own seeded stream.
//!
//! Commands travel motion → drive, feedback drive → motion; the medium keeps each direction in
//! order (a later frame never overtakes an earlier one, as on a real ring or line). This module
//! owns the queues and the fault state; it does not interpret frames (that is `drive.rs`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use rand_chacha::ChaCha8Rng;
use rand_core::Rng;
use services::fieldbus::{DriveCommandFrame, DriveFeedbackFrame, DriveLink};

use crate::drive::SimDrive;

/// Frames in flight per direction; a medium that holds more has a stuck receiver.
pub const FRAMES_IN_FLIGHT_MAX: usize = 4096;

/// Counters of what happened on the medium.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FieldbusStats {
    pub commands_sent: u64,
    pub feedback_sent: u64,
    pub lost: u64,
    pub corrupted: u64,
    pub cut: u64,
}

/// The faults the medium can be in, all at once if need be.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FieldbusFaults {
    pub cut: bool,
    pub latency_extra: Duration,
    pub loss: f64,
    pub corruption: f64,
}

/// One axis's fieldbus.
#[derive(Debug)]
pub struct Fieldbus {
    latency: Duration,
    loss_base: f64,
    corruption_base: f64,
    pub faults: FieldbusFaults,
    to_drive: VecDeque<(Duration, DriveCommandFrame, bool)>,
    to_motion: VecDeque<(Duration, DriveFeedbackFrame)>,
    rng: ChaCha8Rng,
    pub stats: FieldbusStats,
}

/// What became of a frame handed to the medium.
enum Fate {
    Deliver { at: Duration, corrupted: bool },
    Drop,
}

impl Fieldbus {
    pub fn new(latency: Duration, loss: f64, corruption: f64, rng: ChaCha8Rng) -> Fieldbus {
        Fieldbus {
            latency,
            loss_base: loss,
            corruption_base: corruption,
            faults: FieldbusFaults::default(),
            to_drive: VecDeque::new(),
            to_motion: VecDeque::new(),
            rng,
            stats: FieldbusStats::default(),
        }
    }

    /// The base one-way latency.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    fn fate(&mut self, now: Duration, last_delivery: Option<Duration>) -> Fate {
        if self.faults.cut {
            self.stats.cut += 1;
            return Fate::Drop;
        }
        // Draw both numbers for every frame so that the stream does not shift with the fault state.
        let lost = unit(&mut self.rng) < self.loss_base.max(self.faults.loss);
        let corrupted = unit(&mut self.rng) < self.corruption_base.max(self.faults.corruption);
        if lost {
            self.stats.lost += 1;
            return Fate::Drop;
        }
        if corrupted {
            self.stats.corrupted += 1;
        }
        let at =
            (now + self.latency + self.faults.latency_extra).max(last_delivery.unwrap_or_default());
        Fate::Deliver { at, corrupted }
    }

    /// Motion side: a command leaves at `now`.
    pub fn send_command(&mut self, now: Duration, frame: DriveCommandFrame) {
        self.stats.commands_sent += 1;
        let last = self.to_drive.back().map(|(at, _, _)| *at);
        if let Fate::Deliver { at, corrupted } = self.fate(now, last) {
            assert!(
                self.to_drive.len() < FRAMES_IN_FLIGHT_MAX,
                "fieldbus command queue overflow"
            );
            self.to_drive.push_back((at, frame, corrupted));
        }
    }

    /// Drive side: when the next command in flight arrives, if one is.
    pub fn peek_command_at(&self) -> Option<Duration> {
        self.to_drive.front().map(|(at, _, _)| *at)
    }

    /// Drive side: the next command due at or before `until`, with whether it arrived corrupted.
    pub fn next_command(&mut self, until: Duration) -> Option<(Duration, DriveCommandFrame, bool)> {
        match self.to_drive.front() {
            Some((at, _, _)) if *at <= until => self.to_drive.pop_front(),
            _ => None,
        }
    }

    /// Drive side: feedback sampled at `now`, arriving after the link latency.
    pub fn send_feedback(&mut self, now: Duration, mut frame: DriveFeedbackFrame) {
        self.stats.feedback_sent += 1;
        // Feedback is process data: a frame that has arrived is superseded by the next one to
        // arrive, as the controller only ever takes the newest. Dropping superseded frames keeps
        // the medium bounded while no controller reads (its host is down).
        while self.to_motion.len() >= 2 && self.to_motion[1].0 <= now {
            self.to_motion.pop_front();
        }
        let last = self.to_motion.back().map(|(at, _)| *at);
        if let Fate::Deliver { at, corrupted } = self.fate(now, last) {
            frame.valid = frame.valid && !corrupted;
            assert!(
                self.to_motion.len() < FRAMES_IN_FLIGHT_MAX,
                "fieldbus feedback queue overflow"
            );
            self.to_motion.push_back((at, frame));
        }
    }

    /// Motion side: the newest feedback that has arrived by `now`; older arrivals are dropped.
    pub fn latest_feedback(&mut self, now: Duration) -> Option<DriveFeedbackFrame> {
        let mut latest = None;
        while let Some((at, _)) = self.to_motion.front() {
            if *at > now {
                break;
            }
            latest = self.to_motion.pop_front().map(|(_, frame)| frame);
        }
        latest
    }
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The motion service's end of a fieldbus inside the simulation. Cloned into the motion host
/// each time it starts; the medium and the drive survive the host's crashes.
///
/// A read runs the drive up to the reader's instant first ([`SimDrive::advance_before`]): a
/// turmoil tick may span several control periods, and the controller must see the feedback of
/// the period before its own, as it would on a real bus. Only the drive's own motion host sends
/// it commands, in time order, so running the drive ahead of the rest of the world within a tick
/// never lets a command arrive in the drive's past.
#[derive(Debug, Clone)]
pub struct SimDriveLink {
    bus: Rc<RefCell<Fieldbus>>,
    drive: Rc<RefCell<SimDrive>>,
}

impl SimDriveLink {
    pub fn new(bus: Rc<RefCell<Fieldbus>>, drive: Rc<RefCell<SimDrive>>) -> SimDriveLink {
        SimDriveLink { bus, drive }
    }
}

fn sim_now() -> Duration {
    turmoil::sim_elapsed().expect("a drive link is only used inside a turmoil host")
}

impl DriveLink for SimDriveLink {
    fn send(&mut self, frame: DriveCommandFrame) {
        self.bus.borrow_mut().send_command(sim_now(), frame);
    }

    fn latest_feedback(&mut self) -> Option<DriveFeedbackFrame> {
        let now = sim_now();
        self.drive.borrow_mut().advance_before(now);
        self.bus.borrow_mut().latest_feedback(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;
    use services::fieldbus::DriveStatus;

    fn command(sequence: u32) -> DriveCommandFrame {
        DriveCommandFrame {
            sequence,
            current_a: 0.1,
            torque_enabled: true,
            position_setpoint_rad: 0.0,
            moving: false,
        }
    }

    fn feedback(sequence: u32) -> DriveFeedbackFrame {
        DriveFeedbackFrame {
            sequence,
            position_rad: 0.0,
            velocity_rad_per_s: 0.0,
            current_a: 0.0,
            winding_temperature_c: 25.0,
            status: DriveStatus::default(),
            valid: true,
        }
    }

    fn bus() -> Fieldbus {
        Fieldbus::new(
            Duration::from_micros(50),
            0.0,
            0.0,
            ChaCha8Rng::seed_from_u64(3),
        )
    }

    // Goal: a frame arrives exactly one latency after it was sent, never before, and frames keep
    // their order even when the latency drops while earlier ones are in flight.
    #[test]
    fn frames_arrive_after_the_latency_in_order() {
        let mut bus = bus();
        bus.faults.latency_extra = Duration::from_micros(500);
        bus.send_command(Duration::ZERO, command(1));
        bus.faults.latency_extra = Duration::ZERO;
        bus.send_command(Duration::from_micros(10), command(2));
        assert!(bus.next_command(Duration::from_micros(549)).is_none());
        let (at, frame, corrupted) = bus.next_command(Duration::from_micros(550)).unwrap();
        assert_eq!(
            (at, frame.sequence, corrupted),
            (Duration::from_micros(550), 1, false)
        );
        assert_eq!(
            bus.next_command(Duration::from_micros(550))
                .unwrap()
                .1
                .sequence,
            2
        );
    }

    // Goal: the motion side sees only the newest arrived feedback, and nothing not yet arrived.
    #[test]
    fn latest_feedback_supersedes_older_frames() {
        let mut bus = bus();
        for k in 0..3 {
            bus.send_feedback(Duration::from_micros(100 * k), feedback(k as u32));
        }
        assert!(bus.latest_feedback(Duration::from_micros(49)).is_none());
        assert_eq!(
            bus.latest_feedback(Duration::from_micros(160))
                .unwrap()
                .sequence,
            1
        );
        assert!(bus.latest_feedback(Duration::from_micros(200)).is_none());
        assert_eq!(
            bus.latest_feedback(Duration::from_micros(250))
                .unwrap()
                .sequence,
            2
        );
    }

    // Goal: cut, loss and corruption each act and are counted; rates follow the probability.
    #[test]
    fn faults_cut_lose_and_corrupt_frames() {
        let mut bus = bus();
        bus.faults.cut = true;
        bus.send_command(Duration::ZERO, command(1));
        assert!(bus.next_command(Duration::from_secs(1)).is_none());
        assert_eq!(bus.stats.cut, 1);

        bus.faults = FieldbusFaults {
            loss: 0.25,
            corruption: 0.5,
            ..FieldbusFaults::default()
        };
        let n = 10_000;
        let (mut arrived, mut corrupted) = (0usize, 0usize);
        for k in 0..n {
            bus.send_feedback(Duration::from_micros(k), feedback(k as u32));
            // Drain as a receiver would, so the medium never holds more than a few frames.
            while let Some((_, frame)) = bus.to_motion.pop_front() {
                arrived += 1;
                corrupted += usize::from(!frame.valid);
            }
        }
        let lost = n as usize - arrived;
        assert_eq!(bus.stats.lost as usize, lost);
        assert_eq!(bus.stats.corrupted as usize, corrupted);
        assert!((2_200..2_800).contains(&lost), "lost {lost}");
        assert!((3_400..4_100).contains(&corrupted), "corrupted {corrupted}");
    }

    // Regression (found with a motion host kept down by a corrupted disk): with nobody reading,
    // feedback must not pile up on the medium; the newest arrived frame is still there to read.
    #[test]
    fn unread_feedback_stays_bounded() {
        let mut bus = bus();
        for k in 0..(FRAMES_IN_FLIGHT_MAX as u64 * 3) {
            bus.send_feedback(Duration::from_micros(1000 * k), feedback(k as u32));
        }
        assert!(
            bus.to_motion.len() <= 2,
            "{} frames held",
            bus.to_motion.len()
        );
        let newest = bus.latest_feedback(Duration::from_secs(3600)).unwrap();
        assert_eq!(newest.sequence, FRAMES_IN_FLIGHT_MAX as u32 * 3 - 1);
    }
}
