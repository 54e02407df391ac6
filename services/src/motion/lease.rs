//! One axis's lease: who may move it now, and the fencing token that only grows.
//!
//! Owns the lease (holder, token, expiry, whether its token is durable yet) and the newest token
//! issued for the axis. Pure: time is the caller's `now` (a `Duration` since the service
//! started), durability is the version number the core reports. It does not write anything: the
//! core persists `token_issued_max` and calls `confirm_durable` before it reveals a new token, so
//! a restarted service resumes above every token it ever handed out.
//!
//! Rules:
//! - A durable lease is live while `now < expires_at`. A lease whose token is not durable yet is
//!   live regardless of time: it cannot expire (or be taken over) before it was even revealed,
//!   so a trace always shows `lease_granted` before that lease's `lease_expired`.
//! - Acquiring a free axis issues `token_issued_max + 1`; the live holder acquiring again renews
//!   (same token, new expiry); anyone else is told who holds it.
//! - A token is current only if it is the newest issued *and* its lease is live; an older token
//!   is stale.

use std::time::Duration;

/// A granted lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub token: u64,
    /// `now` from which the lease is no longer live (once durable).
    pub expires_at: Duration,
    /// The core's durable-state version that records this token.
    pub durable_version: u64,
    /// That version is on disk: the token may be revealed.
    pub durable: bool,
}

impl Lease {
    fn is_live(&self, now: Duration) -> bool {
        !self.durable || now < self.expires_at
    }
}

/// Outcome of `LeaseSlot::acquire`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// A new token was issued, recorded at the given version: persist, then reveal.
    Granted { token: u64 },
    /// The live holder's lease was extended; the token is unchanged (and revealable once
    /// `durable`).
    Renewed {
        token: u64,
        durable: bool,
        durable_version: u64,
    },
    /// Someone else holds a live lease.
    Held {
        holder: String,
        expires_in: Duration,
    },
}

/// What a presented token is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// Newest token and its lease is live.
    Current,
    /// Older than the newest issued token.
    Stale { token_current: u64 },
    /// Newest token, but its lease expired or was released.
    NotHeld,
    /// Never issued (above the newest).
    NotIssued,
}

/// One axis's lease state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseSlot {
    token_issued_max: u64,
    lease: Option<Lease>,
}

impl LeaseSlot {
    /// A slot whose next token will be above `token_issued_max` (from the durable state).
    pub fn new(token_issued_max: u64) -> LeaseSlot {
        LeaseSlot {
            token_issued_max,
            lease: None,
        }
    }

    /// The newest token ever issued for the axis (0: none).
    pub fn token_issued_max(&self) -> u64 {
        self.token_issued_max
    }

    /// The lease if it is live at `now`.
    pub fn live(&self, now: Duration) -> Option<&Lease> {
        self.lease.as_ref().filter(|lease| lease.is_live(now))
    }

    /// Drops a lease that is no longer live, returning it so the caller can trace the expiry.
    pub fn expire(&mut self, now: Duration) -> Option<Lease> {
        if self.lease.as_ref().is_some_and(|lease| !lease.is_live(now)) {
            return self.lease.take();
        }
        None
    }

    /// Takes or renews the lease for `holder` until `now + ttl`. A new token is recorded at
    /// `durable_version` and is not durable until `confirm_durable`.
    pub fn acquire(
        &mut self,
        now: Duration,
        holder: &str,
        ttl: Duration,
        durable_version: u64,
    ) -> Acquired {
        assert!(!ttl.is_zero(), "a lease needs a positive ttl");
        if let Some(lease) = self.lease.as_mut().filter(|lease| lease.is_live(now)) {
            if lease.holder != holder {
                return Acquired::Held {
                    holder: lease.holder.clone(),
                    expires_in: lease.expires_at.saturating_sub(now),
                };
            }
            lease.expires_at = now + ttl;
            return Acquired::Renewed {
                token: lease.token,
                durable: lease.durable,
                durable_version: lease.durable_version,
            };
        }
        let token = self
            .token_issued_max
            .checked_add(1)
            .expect("fencing tokens exhausted (2^64 grants)");
        self.token_issued_max = token;
        self.lease = Some(Lease {
            holder: holder.to_owned(),
            token,
            expires_at: now + ttl,
            durable_version,
            durable: false,
        });
        Acquired::Granted { token }
    }

    /// Marks the lease durable if `version_durable` covers it; returns it when that happened
    /// just now (the moment to reveal and trace the grant).
    pub fn confirm_durable(&mut self, version_durable: u64) -> Option<&Lease> {
        let lease = self.lease.as_mut()?;
        if lease.durable || lease.durable_version > version_durable {
            return None;
        }
        lease.durable = true;
        Some(lease)
    }

    /// How `token` stands at `now`.
    pub fn fence(&self, now: Duration, token: u64) -> Fence {
        if token < self.token_issued_max {
            return Fence::Stale {
                token_current: self.token_issued_max,
            };
        }
        if token > self.token_issued_max {
            return Fence::NotIssued;
        }
        match self.live(now) {
            Some(lease) => {
                assert_eq!(
                    lease.token, self.token_issued_max,
                    "the live lease holds the newest token"
                );
                Fence::Current
            }
            None => Fence::NotHeld,
        }
    }

    /// Releases the live lease if `token` is current; returns what the token was worth.
    pub fn release(&mut self, now: Duration, token: u64) -> Fence {
        let fence = self.fence(now, token);
        if fence == Fence::Current {
            self.lease = None;
        }
        fence
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_millis(100);

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Acquires and confirms at once, as if the disk were instant.
    fn grant(slot: &mut LeaseSlot, now: Duration, holder: &str) -> u64 {
        let Acquired::Granted { token } = slot.acquire(now, holder, TTL, 1) else {
            panic!("expected a grant");
        };
        slot.confirm_durable(u64::MAX).expect("just granted");
        token
    }

    #[test]
    fn grant_renew_hold_expire_regrant() {
        // Goal: the lease lifecycle, including the exact expiry instant. Method: grant to a,
        // refuse b, renew a, expire exactly at expires_at, grant b a higher token.
        let mut slot = LeaseSlot::new(0);
        assert_eq!(grant(&mut slot, ms(0), "a"), 1);
        assert_eq!(
            slot.acquire(ms(40), "b", TTL, 2),
            Acquired::Held {
                holder: "a".into(),
                expires_in: ms(60)
            }
        );
        assert_eq!(
            slot.acquire(ms(50), "a", TTL, 2),
            Acquired::Renewed {
                token: 1,
                durable: true,
                durable_version: 1
            }
        );
        assert_eq!(slot.live(ms(149)).map(|l| l.token), Some(1));
        assert_eq!(slot.live(ms(150)), None, "not live at expires_at");
        assert_eq!(slot.expire(ms(149)), None);
        assert_eq!(slot.expire(ms(150)).map(|l| l.token), Some(1));
        assert_eq!(grant(&mut slot, ms(150), "b"), 2);
        assert_eq!(slot.token_issued_max(), 2);
    }

    #[test]
    fn undurable_lease_neither_expires_nor_yields() {
        // Goal: a grant waiting for the disk cannot expire or be taken over before it is
        // revealed. Method: grant at version 3, let its ttl pass, try to expire it and to take
        // it; then confirm version 2 (not enough) and 3 (reveals it once), after which it expires.
        let mut slot = LeaseSlot::new(0);
        assert_eq!(
            slot.acquire(ms(0), "a", TTL, 3),
            Acquired::Granted { token: 1 }
        );
        assert_eq!(slot.expire(ms(500)), None);
        assert!(matches!(
            slot.acquire(ms(500), "b", TTL, 4),
            Acquired::Held { .. }
        ));
        assert_eq!(slot.confirm_durable(2), None);
        assert_eq!(slot.confirm_durable(3).map(|l| l.token), Some(1));
        assert_eq!(slot.confirm_durable(3), None, "revealed once");
        assert_eq!(slot.expire(ms(500)).map(|l| l.token), Some(1));
    }

    #[test]
    fn fence_classifies_every_token() {
        // Goal: stale, current, not-held and never-issued tokens are told apart. Method: two
        // grants, then check tokens 1..=3 while live and after expiry.
        let mut slot = LeaseSlot::new(0);
        grant(&mut slot, ms(0), "a");
        slot.expire(ms(100));
        grant(&mut slot, ms(100), "b");
        assert_eq!(slot.fence(ms(150), 1), Fence::Stale { token_current: 2 });
        assert_eq!(slot.fence(ms(150), 2), Fence::Current);
        assert_eq!(slot.fence(ms(150), 3), Fence::NotIssued);
        assert_eq!(slot.fence(ms(200), 2), Fence::NotHeld);
    }

    #[test]
    fn release_needs_the_current_token() {
        // Goal: only the holder's current token releases; the token high-water stays. Method:
        // release with a stale and a wrong token (no effect), then the right one; re-acquire.
        let mut slot = LeaseSlot::new(5);
        assert_eq!(grant(&mut slot, ms(0), "a"), 6);
        assert_eq!(slot.release(ms(1), 5), Fence::Stale { token_current: 6 });
        assert_eq!(slot.release(ms(1), 7), Fence::NotIssued);
        assert!(slot.live(ms(1)).is_some());
        assert_eq!(slot.release(ms(1), 6), Fence::Current);
        assert!(slot.live(ms(1)).is_none());
        assert_eq!(slot.release(ms(1), 6), Fence::NotHeld);
        assert_eq!(grant(&mut slot, ms(2), "a"), 7);
    }
}
