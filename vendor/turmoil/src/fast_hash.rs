//! The hasher of turmoil's internal maps.
//!
//! The maps keyed by host address, link pair, port and socket pair are looked up several
//! times per host per step and per message; SipHash (std's default, built to resist hash
//! flooding by untrusted input) was a tenth of a simulation's instructions. The keys are the
//! simulation's own, so a multiply-rotate hash with a final avalanche serves. The maps are
//! `IndexMap`s: their iteration order is their insertion order whatever the hasher, so the
//! hasher cannot change a simulation's behaviour.

use std::hash::{BuildHasherDefault, Hasher};

/// An insertion-ordered map with [`FastHasher`].
pub(crate) type FastMap<K, V> = indexmap::IndexMap<K, V, BuildHasherDefault<FastHasher>>;

/// Multiply-rotate over 64-bit words (as rustc's FxHasher), then murmur3's 64-bit finaliser,
/// so that keys differing only in their high bytes (addresses within one subnet) still spread
/// over the low bits that pick a bucket.
#[derive(Default, Clone, Copy)]
pub(crate) struct FastHasher {
    hash: u64,
}

const MULTIPLIER: u64 = 0x517c_c1b7_2722_0a95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(MULTIPLIER);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};
    use std::net::{IpAddr, Ipv4Addr};

    // Addresses of one subnet differ only in their last octet: they must still fall into
    // different buckets of a small table.
    #[test]
    fn subnet_addresses_spread_over_the_low_bits() {
        let build = BuildHasherDefault::<FastHasher>::default();
        let mut buckets = std::collections::BTreeSet::new();
        for last in 1..=16u8 {
            let addr = IpAddr::V4(Ipv4Addr::new(192, 168, 0, last));
            let mut hasher = build.build_hasher();
            addr.hash(&mut hasher);
            buckets.insert(hasher.finish() & 31);
        }
        assert!(
            buckets.len() >= 10,
            "{} distinct buckets of 32",
            buckets.len()
        );
    }
}
