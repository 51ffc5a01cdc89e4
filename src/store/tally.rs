//! Per-key totals of one bucket, compact once the bucket's time has passed.
//!
//! An open hash map costs about 100 bytes per entry on this data (a 64-byte slot
//! for an id and a 16-byte-aligned `Agg`, at hashbrown's load factor). Past buckets
//! are read far more than written, so `seal` moves their entries into two sorted
//! arrays (a 4-byte key and a 24-byte packed total, no slack): about a third of the
//! memory, and a binary search instead of a hash probe. A late row for a past bucket
//! still lands exactly: in place if its key is sealed, else in the small open map
//! until the next seal. A total too large for the packed form (over 9.2 million
//! dollars, or 4.29 billion requests or tokens, in one bucket and key) stays in the
//! map.

use rustc_hash::FxHashMap;

use crate::model::Agg;
use crate::money::Money;

/// An `Agg` whose cost fits 64 bits of picodollars and whose counts fit 32 bits:
/// 24 bytes, where the `i128` cost alone aligns an `Agg` to 16 and makes it 48.
#[derive(Debug, Clone, Copy)]
struct PackedAgg {
    cost_picos: i64,
    requests: u32,
    computed: u32,
    input_tokens: u32,
    output_tokens: u32,
}

impl PackedAgg {
    fn pack(a: &Agg) -> Option<Self> {
        Some(PackedAgg {
            cost_picos: i64::try_from(a.cost.picos()).ok()?,
            requests: u32::try_from(a.requests).ok()?,
            computed: u32::try_from(a.computed).ok()?,
            input_tokens: u32::try_from(a.input_tokens).ok()?,
            output_tokens: u32::try_from(a.output_tokens).ok()?,
        })
    }

    fn unpack(&self) -> Agg {
        Agg {
            cost: Money::from_picos(i128::from(self.cost_picos)),
            requests: u64::from(self.requests),
            input_tokens: u64::from(self.input_tokens),
            output_tokens: u64::from(self.output_tokens),
            computed: u64::from(self.computed),
        }
    }
}

/// Heap bytes of a hash map of this capacity: a slot per entry and a control byte.
pub(super) fn map_bytes<K, V>(capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else {
        // hashbrown keeps capacity at 7/8 of its power-of-two bucket count.
        let buckets = (capacity * 8 / 7).next_power_of_two();
        buckets * (std::mem::size_of::<(K, V)>() + 1)
    }
}

/// Totals per key (an interned name or a combination id). Every key is in exactly
/// one of the two parts.
#[derive(Debug, Clone, Default)]
pub(super) struct Tally {
    /// Sealed part: sorted keys and their totals, index for index.
    keys: Vec<u32>,
    vals: Vec<PackedAgg>,
    /// Keys added since the last seal.
    open: FxHashMap<u32, Agg>,
}

impl Tally {
    /// Adds `a` to `key`'s total; true if the key is new here.
    pub(super) fn add(&mut self, key: u32, a: &Agg) -> bool {
        match self.keys.binary_search(&key) {
            Ok(i) => {
                let mut sum = self.vals[i].unpack();
                sum.add(a);
                match PackedAgg::pack(&sum) {
                    Some(p) => self.vals[i] = p,
                    None => {
                        // Outgrew the packed form: back to the map, for good.
                        self.keys.remove(i);
                        self.vals.remove(i);
                        self.open.insert(key, sum);
                    }
                }
                false
            }
            Err(_) => {
                let entry = self.open.entry(key);
                let new = matches!(entry, std::collections::hash_map::Entry::Vacant(_));
                entry.or_default().add(a);
                new
            }
        }
    }

    /// Renames every key through `map` (old key -> new key; `u32::MAX` drops it).
    /// The map must keep the order of the keys it keeps, so the sealed part stays
    /// sorted without a sort.
    pub(super) fn rename(&mut self, map: &[u32]) {
        let renamed = |k: u32| map.get(k as usize).copied().filter(|n| *n != u32::MAX);
        let mut keys = Vec::with_capacity(self.keys.len());
        let mut vals = Vec::with_capacity(self.vals.len());
        for (k, v) in self.keys.iter().zip(&self.vals) {
            if let Some(n) = renamed(*k) {
                keys.push(n);
                vals.push(*v);
            }
        }
        debug_assert!(keys.windows(2).all(|w| w[0] < w[1]), "the map keeps order");
        self.keys = keys;
        self.vals = vals;
        self.open = std::mem::take(&mut self.open)
            .into_iter()
            .filter_map(|(k, a)| renamed(k).map(|n| (n, a)))
            .collect();
    }

    /// Heap bytes held (capacity, not length: what the allocator gave).
    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.keys.capacity() * size_of::<u32>()
            + self.vals.capacity() * size_of::<PackedAgg>()
            + map_bytes::<u32, Agg>(self.open.capacity())
    }

    /// The keys, in no particular order.
    pub(super) fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.iter().copied().chain(self.open.keys().copied())
    }

    pub(super) fn get(&self, key: u32) -> Option<Agg> {
        match self.keys.binary_search(&key) {
            Ok(i) => Some(self.vals[i].unpack()),
            Err(_) => self.open.get(&key).copied(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len() + self.open.len()
    }

    /// Every key once, with its total (sealed keys in order, then the open ones).
    pub(super) fn iter(&self) -> impl Iterator<Item = (u32, Agg)> + '_ {
        self.iter_where(|_| true)
    }

    /// Like `iter`, over the keys `keep` accepts: the rest are never unpacked.
    pub(super) fn iter_where<'a>(
        &'a self,
        keep: impl Fn(u32) -> bool + Copy + 'a,
    ) -> impl Iterator<Item = (u32, Agg)> + 'a {
        let sealed = self.keys.iter().zip(&self.vals);
        sealed
            .filter(move |(k, _)| keep(**k))
            .map(|(k, v)| (*k, v.unpack()))
            .chain(
                self.open
                    .iter()
                    .filter(move |(k, _)| keep(**k))
                    .map(|(k, a)| (*k, *a)),
            )
    }

    /// Whether keys were added since the last seal.
    #[cfg(test)]
    fn has_open(&self) -> bool {
        !self.open.is_empty()
    }

    /// Merges the open keys into the sorted arrays and frees the map (but for the
    /// rare total too large to pack).
    pub(super) fn seal(&mut self) {
        if self.open.is_empty() {
            return;
        }
        let mut fresh: Vec<(u32, PackedAgg)> = Vec::with_capacity(self.open.len());
        let mut unpackable = FxHashMap::default();
        for (k, a) in std::mem::take(&mut self.open) {
            match PackedAgg::pack(&a) {
                Some(p) => fresh.push((k, p)),
                None => {
                    unpackable.insert(k, a);
                }
            }
        }
        self.open = unpackable;
        fresh.sort_unstable_by_key(|(k, _)| *k);
        let n = self.keys.len() + fresh.len();
        let mut keys = Vec::with_capacity(n);
        let mut vals = Vec::with_capacity(n);
        // Disjoint sorted runs (a key is never in both parts): a two-way merge.
        let (mut i, mut j) = (0, 0);
        while i < self.keys.len() || j < fresh.len() {
            let take_sealed =
                j == fresh.len() || (i < self.keys.len() && self.keys[i] < fresh[j].0);
            if take_sealed {
                keys.push(self.keys[i]);
                vals.push(self.vals[i]);
                i += 1;
            } else {
                keys.push(fresh[j].0);
                vals.push(fresh[j].1);
                j += 1;
            }
        }
        self.keys = keys;
        self.vals = vals;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(picos: i128, requests: u64) -> Agg {
        Agg {
            cost: Money::from_picos(picos),
            requests,
            input_tokens: requests * 3,
            output_tokens: requests * 5,
            computed: requests / 2,
        }
    }

    fn sorted(t: &Tally) -> Vec<(u32, Agg)> {
        let mut v: Vec<_> = t.iter().collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    #[test]
    fn packing_keeps_every_field_exactly_or_refuses() {
        let a = |picos: i128, requests: u64| Agg {
            cost: Money::from_picos(picos),
            requests,
            input_tokens: u64::from(u32::MAX),
            output_tokens: 13,
            computed: requests / 2,
        };
        let fits = [
            (0, 0),
            (1, 1),
            (-1, 9),
            (i64::MAX.into(), 1),
            (i64::MIN.into(), u32::MAX.into()),
        ];
        for (picos, requests) in fits {
            let x = a(picos, requests);
            assert_eq!(PackedAgg::pack(&x).map(|p| p.unpack()), Some(x));
        }
        let too_large = [
            (i128::from(i64::MAX) + 1, 1),
            (i128::from(i64::MIN) - 1, 1),
            (5, u64::from(u32::MAX) + 1),
        ];
        for (picos, requests) in too_large {
            assert!(PackedAgg::pack(&a(picos, requests)).is_none());
        }
        let many_tokens = Agg {
            output_tokens: u64::from(u32::MAX) + 1,
            ..a(5, 1)
        };
        assert!(PackedAgg::pack(&many_tokens).is_none());
    }

    #[test]
    fn a_total_too_large_to_pack_stays_exact_in_the_map() {
        const MILLION_DOLLARS: i128 = 1_000_000 * 1_000_000_000_000;
        let mut t = Tally::default();
        t.add(1, &agg(10, 1));
        t.add(2, &agg(MILLION_DOLLARS, 1));
        t.seal();
        assert!(!t.has_open());
        // Ten one-million-dollar rows: past 64 bits of picodollars.
        for _ in 0..9 {
            t.add(2, &agg(MILLION_DOLLARS, 1));
        }
        for _ in 0..11 {
            t.add(3, &agg(MILLION_DOLLARS, 1));
        }
        t.seal();
        assert!(t.has_open(), "keys 2 and 3 do not pack");
        let cost = |k| t.get(k).map(|a| (a.cost.picos(), a.requests));
        assert_eq!(cost(1), Some((10, 1)));
        assert_eq!(cost(2), Some((10 * MILLION_DOLLARS, 10)));
        assert_eq!(cost(3), Some((11 * MILLION_DOLLARS, 11)));
        let mut keys: Vec<u32> = t.iter().map(|(k, _)| k).collect();
        keys.sort_unstable();
        assert_eq!(keys, [1, 2, 3], "each key once");
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn sums_are_the_same_before_and_after_sealing_and_late_adds_land_exactly() {
        let mut open = Tally::default();
        let mut sealed = Tally::default();
        // Keys in a scrambled order, some repeated; seal partway and add again:
        // late adds hit sealed keys in place and new keys in the open map.
        let keys: Vec<u32> = (0..500u32).map(|i| (i * 7919) % 257).collect();
        for (n, k) in keys.iter().enumerate() {
            let a = agg(i128::from(*k) * 1_000_003 - 40_000, u64::from(*k % 5 + 1));
            open.add(*k, &a);
            sealed.add(*k, &a);
            if n % 97 == 0 {
                sealed.seal();
            }
        }
        sealed.seal();
        // A late add of a sealed key lands in place; a new key waits in the map.
        for k in [5, 300] {
            open.add(k, &agg(77, 1));
            sealed.add(k, &agg(77, 1));
        }
        assert!(
            sealed.has_open(),
            "the new key stays open until the next seal"
        );
        assert_eq!(sorted(&open), sorted(&sealed));
        sealed.seal();
        assert!(!sealed.has_open());
        assert_eq!(sorted(&open), sorted(&sealed));
        assert_eq!(open.len(), sealed.len());
        assert_eq!(sealed.len(), 258);
        for k in [0, 1, 5, 128, 256, 257, 300, 9999] {
            assert_eq!(open.get(k), sealed.get(k), "key {k}");
        }
        // Sealed keys are iterated once each, in order.
        let ks: Vec<u32> = sealed.iter().map(|(k, _)| k).collect();
        assert!(ks.windows(2).all(|w| w[0] < w[1]));
    }
}
