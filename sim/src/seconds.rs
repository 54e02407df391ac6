//! Durations written as seconds (`f64`) where a run meets serde: reports, faults and violations
//! in JSON and snapshots. Owns only these two serializers, so that the types that carry a
//! `Duration` (faults, violations, reports) need not depend on one another for them.

use std::time::Duration;

use serde::Serializer;

pub(crate) fn serialize_duration_s<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

pub(crate) fn serialize_option_duration_s<S: Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}
