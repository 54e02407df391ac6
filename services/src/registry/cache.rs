//! The discovering client's cache of registry answers.
//!
//! Owns `DiscoveryCache`: per service, the passing instances of the last answer and how long
//! each may be served. Pure, time passed in. It does not own the RPC (`client::RegistryClient`).
//!
//! Rule: an entry is never served past `cache_ttl` after the request that fetched it was *sent*,
//! and each instance never past its own `expires_in_ms` counted from the same instant. Counting
//! from the send (not the answer's arrival) keeps the cache on the safe side of the registry's
//! clock: the registry measured `expires_in_ms` at a moment no earlier than the send, so the
//! cache drops an instance no later than the registry turns it critical, provided clocks run at
//! the same rate (they do in the simulation; in real runs the drift over a TTL is negligible).
//! Empty answers are not cached: a service that just came up is found on the next request.

use std::collections::BTreeMap;
use std::time::Duration;

use super::protocol::{InstanceSpec, InstanceView};

/// Most services cached at once.
pub const SERVICES_MAX: usize = 256;

#[derive(Clone, Debug)]
struct CacheEntry {
    valid_until: Duration,
    /// Each instance with the instant it stops being served.
    instances: Vec<(InstanceSpec, Duration)>,
}

/// Cached discovery answers.
#[derive(Clone, Debug)]
pub struct DiscoveryCache {
    cache_ttl: Duration,
    /// TEST ONLY: planted bug for oracle SR3: each instance is served for the whole entry's
    /// `cache_ttl`, past its own `expires_in_ms`. A correct cell never sets it.
    planted_ignores_instance_ttl: bool,
    entries: BTreeMap<String, CacheEntry>,
}

impl DiscoveryCache {
    /// A cache whose entries live at most `cache_ttl` (zero disables caching).
    pub fn new(cache_ttl: Duration) -> DiscoveryCache {
        DiscoveryCache {
            cache_ttl,
            planted_ignores_instance_ttl: false,
            entries: BTreeMap::new(),
        }
    }

    /// TEST ONLY: the cache with the planted bug of oracle SR3 (see the field).
    pub fn planted_ignoring_instance_ttl(cache_ttl: Duration) -> DiscoveryCache {
        DiscoveryCache {
            planted_ignores_instance_ttl: true,
            ..DiscoveryCache::new(cache_ttl)
        }
    }

    /// The instances of an answer sent at `sent_at` still servable at `now` (`now` being its
    /// arrival, or later): the same rule as `get`, for an answer used before it is cached.
    pub fn servable(
        &self,
        sent_at: Duration,
        now: Duration,
        views: &[InstanceView],
    ) -> Vec<InstanceSpec> {
        views
            .iter()
            .filter(|view| {
                self.planted_ignores_instance_ttl
                    || now < sent_at + Duration::from_millis(u64::from(view.expires_in_ms))
            })
            .map(|view| view.instance.clone())
            .collect()
    }

    /// The instances of `service` still servable at `now`, or `None` to ask the registry.
    pub fn get(&self, now: Duration, service: &str) -> Option<Vec<InstanceSpec>> {
        let entry = self.entries.get(service)?;
        if now >= entry.valid_until {
            return None;
        }
        let instances: Vec<InstanceSpec> = entry
            .instances
            .iter()
            .filter(|(_, until)| now < *until || self.planted_ignores_instance_ttl)
            .map(|(spec, _)| spec.clone())
            .collect();
        (!instances.is_empty()).then_some(instances)
    }

    /// Stores the answer to a discovery of `service` sent at `sent_at`.
    pub fn put(&mut self, sent_at: Duration, service: &str, views: &[InstanceView]) {
        if views.is_empty() || self.cache_ttl.is_zero() {
            self.entries.remove(service);
            return;
        }
        if !self.entries.contains_key(service) && self.entries.len() >= SERVICES_MAX {
            // Full: keep what is cached, serve this answer uncached.
            return;
        }
        let instances = views
            .iter()
            .map(|view| {
                let expires_in = Duration::from_millis(u64::from(view.expires_in_ms));
                (view.instance.clone(), sent_at + expires_in)
            })
            .collect();
        self.entries.insert(
            service.to_owned(),
            CacheEntry {
                valid_until: sent_at + self.cache_ttl,
                instances,
            },
        );
    }

    /// Forgets `service` (for example after every cached instance failed).
    pub fn invalidate(&mut self, service: &str) {
        self.entries.remove(service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn view(id: &str, expires_in_ms: u32) -> InstanceView {
        InstanceView {
            instance: InstanceSpec {
                service: "orders".into(),
                instance_id: id.into(),
                host: id.into(),
                port: 1,
            },
            expires_in_ms,
        }
    }

    #[test]
    fn entries_expire_by_the_cache_ttl_and_by_each_instance_ttl() {
        // Goal: the cache never serves an instance past its TTL nor an answer past cache_ttl.
        // Method: cache_ttl 1000 ms; answer sent at 100 ms with a (300 ms left) and b (2000 ms
        // left); at 399 ms both, at 400 ms only b, at 1100 ms nothing.
        let mut cache = DiscoveryCache::new(1000 * MS);
        cache.put(100 * MS, "orders", &[view("a", 300), view("b", 2000)]);
        let ids = |now| {
            cache.get(now, "orders").map(|list| {
                list.into_iter()
                    .map(|spec| spec.instance_id)
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(ids(399 * MS), Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(ids(400 * MS), Some(vec!["b".to_owned()]));
        assert_eq!(ids(1100 * MS), None);
        assert_eq!(cache.get(Duration::ZERO, "inventory"), None);
    }

    #[test]
    fn an_answer_used_on_arrival_drops_what_expired_in_flight() {
        // Goal: an instance whose TTL ran out while the registry's answer travelled is not
        // used, as it would not be served from the cache. Method: sent at 100 ms, a has 30 ms
        // left; used at 129 ms a is servable, at 130 ms it is not; the planted cache keeps it.
        let cache = DiscoveryCache::new(1000 * MS);
        let views = [view("a", 30), view("b", 2000)];
        let ids = |cache: &DiscoveryCache, now| {
            cache
                .servable(100 * MS, now, &views)
                .into_iter()
                .map(|spec| spec.instance_id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&cache, 129 * MS), ["a", "b"]);
        assert_eq!(ids(&cache, 130 * MS), ["b"]);
        let planted = DiscoveryCache::planted_ignoring_instance_ttl(1000 * MS);
        assert_eq!(ids(&planted, 130 * MS), ["a", "b"]);
    }

    #[test]
    fn empty_answers_are_not_cached() {
        // Goal: no negative caching. Method: put an empty answer over a full one; get misses.
        let mut cache = DiscoveryCache::new(1000 * MS);
        cache.put(Duration::ZERO, "orders", &[view("a", 500)]);
        cache.put(10 * MS, "orders", &[]);
        assert_eq!(cache.get(20 * MS, "orders"), None);
    }
}
