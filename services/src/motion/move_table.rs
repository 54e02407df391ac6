//! The idempotency table: every move request id the service accepted, and how it ended.
//!
//! Owns the records and their bounded window. A request id found here is never executed again:
//! its recorded outcome is the answer. It does not own durability (the core persists the table
//! in its durable state before a move starts) or the lease check (a duplicate is answered before
//! any token is looked at, since answering it has no effect).
//!
//! The window holds `MOVE_RECORDS_MAX` records; beyond it the oldest finished record is
//! forgotten (as a de-duplication window in JetStream or Kafka). A retry of a forgotten id would
//! be a new move, so the window must outlast the clients' retry deadlines by far: at one move per
//! second per axis it covers minutes, against retry deadlines of seconds.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::protocol::{AbortReason, AxisName};

/// Most records kept (a limit on the durable state's size as well).
pub const MOVE_RECORDS_MAX: usize = 1024;

/// Where a recorded move stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MoveOutcome {
    /// Recorded; running (or about to start once the record is durable).
    InProgress,
    /// Ended in position.
    Completed { final_position_rad: f64 },
    /// Started but did not end in position.
    Aborted { reason: AbortReason },
    /// The service restarted while it was in progress, and the axis was not found at rest in
    /// position after the restart; it is never resumed.
    Interrupted,
}

impl MoveOutcome {
    pub fn is_finished(&self) -> bool {
        !matches!(self, MoveOutcome::InProgress)
    }
}

/// One accepted move.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MoveRecord {
    pub request_id: u64,
    pub axis: AxisName,
    pub target_rad: f64,
    pub outcome: MoveOutcome,
}

/// The records, oldest first.
#[derive(Clone, Debug, Default)]
pub struct MoveTable {
    records: BTreeMap<u64, MoveRecord>,
    order: VecDeque<u64>,
}

impl MoveTable {
    pub fn new() -> MoveTable {
        MoveTable::default()
    }

    /// Rebuilds the table from durable records (oldest first) after a restart. Records still in
    /// progress stay so (the core decides them from their axis, never by running them again);
    /// their ids are returned, oldest first.
    pub fn recover(records: Vec<MoveRecord>) -> (MoveTable, Vec<u64>) {
        let mut table = MoveTable::new();
        let mut in_progress = Vec::new();
        for record in records {
            if record.outcome == MoveOutcome::InProgress {
                in_progress.push(record.request_id);
            }
            table.insert(record);
        }
        (table, in_progress)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, request_id: u64) -> Option<&MoveRecord> {
        self.records.get(&request_id)
    }

    /// Adds a record for a new id, forgetting the oldest finished record beyond the window.
    pub fn insert(&mut self, record: MoveRecord) {
        let request_id = record.request_id;
        let previous = self.records.insert(request_id, record);
        assert!(
            previous.is_none(),
            "request id {request_id} recorded twice: a duplicate must be answered, not re-recorded"
        );
        self.order.push_back(request_id);
        if self.records.len() > MOVE_RECORDS_MAX {
            let position = self
                .order
                .iter()
                .position(|id| self.records[id].outcome.is_finished())
                .expect("more records than the window, all in progress: at most one runs per axis");
            let evicted = self.order.remove(position).expect("position is in range");
            self.records.remove(&evicted);
        }
        assert_eq!(
            self.records.len(),
            self.order.len(),
            "table and order agree"
        );
    }

    /// Finishes an in-progress record.
    pub fn finish(&mut self, request_id: u64, outcome: MoveOutcome) {
        assert!(outcome.is_finished(), "finish needs a final outcome");
        let record = self
            .records
            .get_mut(&request_id)
            .expect("finishing a move that was never recorded");
        assert_eq!(
            record.outcome,
            MoveOutcome::InProgress,
            "move {request_id} finished twice"
        );
        record.outcome = outcome;
    }

    /// PLANTED BUG support (TEST ONLY, `MotionConfig::planted_moves_twice`): puts a finished
    /// record back in progress so the same request id runs again. A correct core never calls it.
    pub fn reopen_planted(&mut self, request_id: u64) {
        let record = self
            .records
            .get_mut(&request_id)
            .expect("reopening a move that was never recorded");
        assert!(record.outcome.is_finished(), "move {request_id} is running");
        record.outcome = MoveOutcome::InProgress;
    }

    /// The records, oldest first (the durable order).
    pub fn records(&self) -> impl Iterator<Item = &MoveRecord> {
        self.order.iter().map(|id| &self.records[id])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(request_id: u64, outcome: MoveOutcome) -> MoveRecord {
        MoveRecord {
            request_id,
            axis: AxisName::new("x"),
            target_rad: 1.0,
            outcome,
        }
    }

    #[test]
    fn window_forgets_the_oldest_finished_record_only() {
        // Goal: the table is bounded, and never forgets a move still in progress. Method: put an
        // in-progress record first, fill past the window with finished ones, and check which
        // id went.
        let mut table = MoveTable::new();
        table.insert(record(0, MoveOutcome::InProgress));
        for id in 1..=MOVE_RECORDS_MAX as u64 {
            table.insert(record(id, MoveOutcome::Interrupted));
        }
        assert_eq!(table.len(), MOVE_RECORDS_MAX);
        assert!(table.get(0).is_some(), "in-progress record kept");
        assert!(table.get(1).is_none(), "oldest finished record forgotten");
        assert_eq!(table.records().next().unwrap().request_id, 0);
    }

    #[test]
    fn recovery_returns_the_moves_in_progress_undecided() {
        // Goal: recovery keeps every record and names the moves left in progress for the core
        // to decide (from the axis), deciding nothing itself. Method: recover one in-progress
        // and one completed record and check outcomes and the returned ids.
        let completed = MoveOutcome::Completed {
            final_position_rad: 1.0,
        };
        let (table, in_progress) = MoveTable::recover(vec![
            record(1, MoveOutcome::InProgress),
            record(2, completed.clone()),
        ]);
        assert_eq!(in_progress, vec![1]);
        assert_eq!(table.get(1).unwrap().outcome, MoveOutcome::InProgress);
        assert_eq!(table.get(2).unwrap().outcome, completed);
    }

    #[test]
    #[should_panic(expected = "recorded twice")]
    fn recording_an_id_twice_is_a_bug() {
        // Goal: the core can never record a duplicate as a new move. Method: insert an id twice.
        let mut table = MoveTable::new();
        table.insert(record(1, MoveOutcome::InProgress));
        table.insert(record(1, MoveOutcome::InProgress));
    }

    #[test]
    #[should_panic(expected = "finished twice")]
    fn finishing_twice_is_a_bug() {
        // Goal: an outcome, once recorded, never changes. Method: finish a record twice.
        let mut table = MoveTable::new();
        table.insert(record(1, MoveOutcome::InProgress));
        table.finish(1, MoveOutcome::Interrupted);
        table.finish(1, MoveOutcome::Interrupted);
    }
}
