//! Service keys as data. Each scalar key of a `[services.*]` table is one row: its name, its
//! unit and accepted range, and the field of the cell's resolved configuration
//! ([`super::services::Services`]) it sets. [`service_keys!`] generates from the rows both the
//! file struct (serde, unknown keys refused with their line) and the code that checks and
//! applies them, so a key is spelled once; [`KeyRow`] lists them for documentation and tests.
//!
//! What is not a row: lists (`ack_wait_ms`, API keys, parts) and checks across keys (a backoff
//! maximum below its initial value, a heartbeat slower than the takeover), which stay in
//! `services.rs` after the rows have been applied.

use std::time::Duration;

/// The longest duration a key accepts: a day.
const DURATION_S_MAX: f64 = 24.0 * 3600.0;

/// A key's unit and accepted range: how the file's number becomes the configuration's value.
pub(crate) trait Unit {
    /// What the file holds.
    type Raw: Copy;
    /// What the configuration takes.
    type Value;
    /// The unit as README's tables name it.
    const NAME: &'static str;
    /// The accepted range, as README's tables give it.
    fn range() -> String;
    /// The value, or what is wrong with `raw` (the message's tail after the key's name).
    fn resolve(raw: Self::Raw) -> Result<Self::Value, String>;
}

/// Milliseconds, positive, at most a day.
#[derive(Debug)]
pub(crate) struct Millis;

impl Unit for Millis {
    type Raw = f64;
    type Value = Duration;
    const NAME: &'static str = "ms";
    fn range() -> String {
        "(0, 86400000]".to_owned()
    }
    fn resolve(ms: f64) -> Result<Duration, String> {
        if ms > 0.0 && ms.is_finite() && ms <= DURATION_S_MAX * 1e3 {
            Ok(Duration::from_secs_f64(ms / 1e3))
        } else {
            Err(format!(
                "must be a positive number of milliseconds up to a day, not {ms}"
            ))
        }
    }
}

/// Seconds, positive, at most a day: checked and worded in seconds, as the file says it.
#[derive(Debug)]
pub(crate) struct Seconds;

impl Unit for Seconds {
    type Raw = f64;
    type Value = Duration;
    const NAME: &'static str = "s";
    fn range() -> String {
        "(0, 86400]".to_owned()
    }
    fn resolve(s: f64) -> Result<Duration, String> {
        if s > 0.0 && s.is_finite() && s <= DURATION_S_MAX {
            Ok(Duration::from_secs_f64(s))
        } else {
            Err(format!(
                "must be a positive number of seconds up to a day, not {s}"
            ))
        }
    }
}

/// A whole number in `MIN..=MAX`.
#[derive(Debug)]
pub(crate) struct Count<const MIN: u32, const MAX: u32>;

impl<const MIN: u32, const MAX: u32> Unit for Count<MIN, MAX> {
    type Raw = u32;
    type Value = u32;
    const NAME: &'static str = "count";
    fn range() -> String {
        format!("{MIN} to {MAX}")
    }
    fn resolve(n: u32) -> Result<u32, String> {
        if (MIN..=MAX).contains(&n) {
            Ok(n)
        } else {
            Err(format!("must be {MIN} to {MAX}, not {n}"))
        }
    }
}

/// A percentage in (0, 100].
#[derive(Debug)]
pub(crate) struct Percent;

impl Unit for Percent {
    type Raw = f64;
    type Value = f64;
    const NAME: &'static str = "%";
    fn range() -> String {
        "(0, 100]".to_owned()
    }
    fn resolve(p: f64) -> Result<f64, String> {
        if p > 0.0 && p <= 100.0 {
            Ok(p)
        } else {
            Err(format!("is a percentage in (0, 100], not {p}"))
        }
    }
}

/// One key of a service table, for documentation and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    /// The table, as the file names it (`services.gateway`).
    pub table: &'static str,
    pub key: &'static str,
    pub unit: &'static str,
    pub range: String,
    /// The field of the resolved `Services` it sets (`gateway.upstream.attempt_timeout`).
    pub field: &'static str,
}

/// Generates a service table's file struct and its rows. Each row is
/// `key: Unit => field.path`, optionally followed by `["why"]`, the reason for its range that
/// its error message gives: the file struct gets `key: Option<Unit::Raw>`, and `apply` sets
/// `services.field.path` to the resolved value of each key the file gives, in row order (so
/// the first bad key is the one reported). `extra { … }` fields are carried as they are, for
/// the table's lists.
macro_rules! service_keys {
    (
        $(#[$meta:meta])*
        $file:ident in $table:literal {
            $( $key:ident : $unit:ty => $($field:ident).+ $([$why:literal])? ),* $(,)?
        }
        $( extra { $( $(#[$xmeta:meta])* $xfield:ident : $xty:ty ),* $(,)? } )?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct $file {
            $( pub(crate) $key: Option<<$unit as $crate::scenario::keys::Unit>::Raw>, )*
            $( $( $(#[$xmeta])* pub(crate) $xfield: $xty, )* )?
        }

        impl $file {
            pub(crate) const TABLE: &'static str = $table;

            /// The table's keys, in the order they are applied.
            pub(crate) fn rows() -> Vec<$crate::scenario::keys::KeyRow> {
                vec![$(
                    $crate::scenario::keys::KeyRow {
                        table: $table,
                        key: stringify!($key),
                        unit: <$unit as $crate::scenario::keys::Unit>::NAME,
                        range: <$unit as $crate::scenario::keys::Unit>::range(),
                        field: stringify!($($field).+),
                    }
                ),*]
            }

            /// Sets the field of each key given; the error is the first bad key's message.
            pub(crate) fn apply(
                &self,
                services: &mut $crate::scenario::services::Services,
            ) -> Result<(), String> {
                $(
                    if let Some(raw) = self.$key {
                        services.$($field).+ =
                            <$unit as $crate::scenario::keys::Unit>::resolve(raw).map_err(|m| {
                                let why: &str = concat!("" $(, " (", $why, ")")?);
                                format!("[{}]: `{}` {m}{why}", $table, stringify!($key))
                            })?;
                    }
                )*
                Ok(())
            }
        }
    };
}

pub(crate) use service_keys;

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: each unit accepts exactly its documented range and names the value it refused.
    #[test]
    fn units_accept_their_range_and_name_what_they_refuse() {
        assert_eq!(Millis::resolve(1.5), Ok(Duration::from_micros(1500)));
        assert_eq!(
            Millis::resolve(0.0),
            Err("must be a positive number of milliseconds up to a day, not 0".to_owned())
        );
        assert!(Millis::resolve(f64::NAN).is_err());
        assert!(Millis::resolve(86_400_001.0).is_err());
        assert_eq!(Seconds::resolve(86_400.0), Ok(Duration::from_secs(86_400)));
        assert!(Seconds::resolve(-1.0).unwrap_err().contains("seconds"));
        assert_eq!(Count::<0, 5>::resolve(0), Ok(0));
        assert_eq!(
            Count::<1, 5>::resolve(6),
            Err("must be 1 to 5, not 6".to_owned())
        );
        assert_eq!(Percent::resolve(100.0), Ok(100.0));
        assert!(Percent::resolve(0.0).is_err());
        assert_eq!(Count::<100, 60_000>::range(), "100 to 60000");
    }
}
