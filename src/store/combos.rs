//! The combinations of the five names the store has seen, each with a dense id.
//!
//! There are about a million of them on the benchmark's data, so their bookkeeping
//! is sized with care: the keys live once, in a vector indexed by id, and the lookup
//! table holds only ids (4 bytes a slot, hashing the key the id points at) instead
//! of a second copy of each 20-byte key beside its id; the vectors grow by a quarter
//! instead of doubling; and only dimensions with many names keep per-name lists of
//! their combinations (a region's list would hold a third of them, where scanning
//! every key is as quick).

use std::hash::BuildHasher;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::intern::NameId;
use super::tally::map_bytes;
use crate::model::Dim;

/// Interned names of one combination, indexed by `Dim::index()`.
pub type ComboKey = [NameId; 5];
pub(super) type ComboId = u32;

/// The keys by id. Packed while they fit: each name id in as many bits as the
/// largest id of its dimension needs, all five in one `u64` (8 bytes a key instead
/// of 20; the benchmark's 50,000 users, 20 features, 8 models, 5 tenants and 3
/// regions take 29 bits). An id wider than its dimension's field re-packs every
/// key (at most once per doubling of a dimension's names); past 64 bits in all,
/// the keys are kept whole.
#[derive(Debug, Clone)]
enum Keys {
    Packed { widths: [u32; 5], keys: Vec<u64> },
    Whole(Vec<ComboKey>),
}

impl Default for Keys {
    fn default() -> Self {
        Keys::Packed {
            widths: [0; 5],
            keys: Vec::new(),
        }
    }
}

/// Bits needed for `id`.
fn width_of(id: NameId) -> u32 {
    u32::BITS - id.leading_zeros()
}

fn pack(key: &ComboKey, widths: &[u32; 5]) -> u64 {
    let mut packed = 0u64;
    let mut shift = 0;
    for d in 0..5 {
        // A dimension after 64 bits of others has width 0: its id is 0.
        packed |= u64::from(key[d]).checked_shl(shift).unwrap_or(0);
        shift += widths[d];
    }
    packed
}

fn unpack(mut packed: u64, widths: &[u32; 5]) -> ComboKey {
    let mut key = [0; 5];
    for d in 0..5 {
        let mask = (1u64 << widths[d]) - 1;
        key[d] = (packed & mask) as NameId;
        packed >>= widths[d];
    }
    key
}

impl Keys {
    fn len(&self) -> usize {
        match self {
            Keys::Packed { keys, .. } => keys.len(),
            Keys::Whole(keys) => keys.len(),
        }
    }

    fn get(&self, c: ComboId) -> ComboKey {
        match self {
            Keys::Packed { widths, keys } => unpack(keys[c as usize], widths),
            Keys::Whole(keys) => keys[c as usize],
        }
    }

    fn push(&mut self, key: ComboKey) {
        if let Keys::Packed { widths, keys } = self {
            let needed: [u32; 5] = std::array::from_fn(|d| widths[d].max(width_of(key[d])));
            if needed.iter().sum::<u32>() > u64::BITS {
                *self = Keys::Whole(keys.iter().map(|k| unpack(*k, widths)).collect());
            } else if needed != *widths {
                // In place: no second copy of a million keys.
                for k in keys.iter_mut() {
                    *k = pack(&unpack(*k, widths), &needed);
                }
                *widths = needed;
            }
        }
        match self {
            Keys::Packed { widths, keys } => push_lean(keys, pack(&key, widths)),
            Keys::Whole(keys) => push_lean(keys, key),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Keys::Packed { keys, .. } => keys.capacity() * std::mem::size_of::<u64>(),
            Keys::Whole(keys) => keys.capacity() * std::mem::size_of::<ComboKey>(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(super) struct Combos {
    /// By id.
    keys: Keys,
    /// Ids, found by their key's hash.
    ids: HashTable<ComboId>,
    /// Per dimension with at least [`LISTED_MIN_NAMES`] names, and name id, the
    /// combinations holding that name: a filtered query looks up only the cells
    /// that can match instead of scanning each bucket.
    holding: [Option<Vec<Vec<ComboId>>>; 5],
    /// Per dimension, one more than the largest name id in a key.
    names: [usize; 5],
}

/// A dimension lists the combinations of each of its names once it has this many
/// names. With fewer, a name's list would hold a large share of all combinations
/// (a third for one of three regions), about as many ids as a scan of every key
/// visits, at 4 bytes each.
const LISTED_MIN_NAMES: usize = 256;

fn hash(key: &ComboKey) -> u64 {
    FxBuildHasher.hash_one(key)
}

/// Grows `v` by a quarter (not double) when full: less slack in vectors of a
/// million entries, still amortised constant time a push.
fn push_lean<T>(v: &mut Vec<T>, x: T) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 4).max(1024));
    }
    v.push(x);
}

impl Combos {
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn key(&self, c: ComboId) -> ComboKey {
        self.keys.get(c)
    }

    /// The id of `key`, added if new.
    pub(super) fn intern(&mut self, key: ComboKey) -> ComboId {
        let h = hash(&key);
        let keys = &self.keys;
        if let Some(&c) = self.ids.find(h, |&c| keys.get(c) == key) {
            return c;
        }
        let c = self.keys.len() as ComboId;
        self.keys.push(key);
        let keys = &self.keys;
        self.ids.insert_unique(h, c, |&c| hash(&keys.get(c)));
        self.list(c, key);
        c
    }

    /// Adds combination `c` to the list of each of its names, in the dimensions
    /// that keep lists; a dimension that reaches [`LISTED_MIN_NAMES`] names gets
    /// its lists now, from every key.
    fn list(&mut self, c: ComboId, key: ComboKey) {
        for d in 0..5 {
            let id = key[d] as usize;
            self.names[d] = self.names[d].max(id + 1);
            match &mut self.holding[d] {
                Some(lists) => {
                    if lists.len() <= id {
                        lists.resize_with(id + 1, Vec::new);
                    }
                    lists[id].push(c);
                }
                None if self.names[d] >= LISTED_MIN_NAMES => {
                    let mut lists = vec![Vec::new(); self.names[d]];
                    for (c, k) in self.iter() {
                        lists[k[d] as usize].push(c);
                    }
                    self.holding[d] = Some(lists);
                }
                None => {}
            }
        }
    }

    /// The combinations holding `name` in `dim`, if `dim` keeps lists (else a
    /// caller scans the keys).
    pub(super) fn holding(&self, dim: Dim, name: NameId) -> Option<&[ComboId]> {
        let lists = self.holding[dim.index()].as_ref()?;
        Some(lists.get(name as usize).map_or(&[][..], Vec::as_slice))
    }

    /// Every combination with its id, in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (ComboId, ComboKey)> + '_ {
        (0..self.keys.len() as ComboId).map(|c| (c, self.keys.get(c)))
    }

    /// Keeps the combinations `live` marks (by id), renaming their names through
    /// `name_map`, and renumbers them in their old order. Returns old id -> new id
    /// (`u32::MAX` for a dropped one).
    pub(super) fn retain(&mut self, live: &[bool], name_map: &[Vec<NameId>; 5]) -> Vec<ComboId> {
        let mut combo_map = vec![ComboId::MAX; self.keys.len()];
        let mut kept = Combos::default();
        for (c, key) in self.iter() {
            if live[c as usize] {
                let renamed: ComboKey = std::array::from_fn(|d| name_map[d][key[d] as usize]);
                combo_map[c as usize] = kept.intern(renamed);
            }
        }
        *self = kept;
        combo_map
    }

    /// Heap bytes held (capacities: what the allocator gave).
    pub(super) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        // A table slot is an id and a control byte, like a map's.
        let mut bytes = self.keys.heap_bytes() + map_bytes::<ComboId, ()>(self.ids.capacity());
        for lists in self.holding.iter().flatten() {
            bytes += lists.capacity() * size_of::<Vec<ComboId>>();
            bytes += lists
                .iter()
                .map(|l| l.capacity() * size_of::<ComboId>())
                .sum::<usize>();
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_gets_one_id_and_every_name_lists_its_combinations() {
        let mut c = Combos::default();
        let keys: Vec<ComboKey> = (0..5000u32)
            .map(|i| i % 1000)
            .map(|u| [u % 7, u, u % 3, 0, u % 2])
            .collect();
        let ids: Vec<ComboId> = keys.iter().map(|k| c.intern(*k)).collect();
        // 1000 users, each with one feature, model and region: 1000 combinations.
        assert_eq!(c.len(), 1000);
        for (k, id) in keys.iter().zip(&ids) {
            assert_eq!(c.key(*id), *k);
            assert_eq!(c.intern(*k), *id, "interning again finds the same id");
        }
        // 1000 users keep lists (from the 256th on, built from every key then);
        // 7 features, 3 models and 2 regions do not.
        let of_user_3: Vec<ComboId> = c.holding(Dim::User, 3).unwrap().to_vec();
        assert_eq!(of_user_3.len(), 1);
        assert_eq!(c.key(of_user_3[0])[Dim::User.index()], 3);
        let total: usize = (0..1000)
            .map(|u| c.holding(Dim::User, u).unwrap().len())
            .sum();
        assert_eq!(total, 1000, "each combination in one user's list");
        assert_eq!(c.holding(Dim::User, 5000), Some(&[][..]));
        for dim in [Dim::Feature, Dim::Model, Dim::Region, Dim::Tenant] {
            assert!(c.holding(dim, 0).is_none(), "{dim}");
        }
    }

    #[test]
    fn retaining_the_live_ones_renumbers_in_order_and_keeps_lookups() {
        let mut c = Combos::default();
        for i in 0..100u32 {
            c.intern([i, i + 1, 0, 0, 0]);
        }
        let live: Vec<bool> = (0..100).map(|i| i % 3 == 0).collect();
        // Names renamed: feature i -> i / 3 where kept (order kept), user unchanged.
        let feature_map: Vec<NameId> = (0..100).map(|i| i / 3).collect();
        let user_map: Vec<NameId> = (0..101).collect();
        let same: Vec<NameId> = vec![0];
        let map = c.retain(
            &live,
            &[feature_map, user_map, same.clone(), same.clone(), same],
        );
        assert_eq!(c.len(), 34);
        for old in 0..100u32 {
            if old % 3 == 0 {
                let new = map[old as usize];
                assert_eq!(new, old / 3, "renumbered in order");
                assert_eq!(c.key(new), [old / 3, old + 1, 0, 0, 0]);
                assert_eq!(c.intern([old / 3, old + 1, 0, 0, 0]), new);
            } else {
                assert_eq!(map[old as usize], ComboId::MAX);
            }
        }
        assert_eq!(c.len(), 34, "lookups added nothing");
        // 101 users: too few names for lists.
        assert!(c.holding(Dim::User, 4).is_none());
    }

    #[test]
    fn keys_pack_into_the_bits_their_names_need_and_stay_exact_as_names_grow() {
        let mut c = Combos::default();
        let mut want = Vec::new();
        // Users grow past every power of two up to 2^20; the rest stay small.
        for i in 0..3000u32 {
            let user = if i % 100 == 99 { 1 << (i / 150) } else { i };
            let key = [i % 20, user, i % 8, i % 5, i % 3];
            let id = c.intern(key);
            if id as usize == want.len() {
                want.push(key);
            }
        }
        assert!(matches!(c.keys, Keys::Packed { .. }));
        if let Keys::Packed { widths, .. } = &c.keys {
            assert_eq!(*widths, [5, 20, 3, 3, 2]);
        }
        for (id, key) in want.iter().enumerate() {
            assert_eq!(c.key(id as ComboId), *key);
            assert_eq!(c.intern(*key), id as ComboId);
        }
        // Exactly 64 bits, with the last dimensions all at id 0.
        let mut full = Combos::default();
        let top = u16::MAX.into();
        let edge = [[top, top, top, top, 0], [1, 2, 3, 4, 0], [0, 0, 0, 0, 0]];
        let ids: Vec<ComboId> = edge.iter().map(|k| full.intern(*k)).collect();
        assert!(matches!(full.keys, Keys::Packed { .. }));
        for (id, key) in ids.iter().zip(&edge) {
            assert_eq!(full.key(*id), *key);
        }
        // Past 64 bits in all: kept whole, still exact.
        let huge = [1 << 13, (1 << 13) + 1, 1 << 13, 1 << 13, 1 << 13];
        let id = c.intern(huge);
        assert!(matches!(c.keys, Keys::Whole(_)));
        assert_eq!(c.key(id), huge);
        for (i, key) in want.iter().enumerate() {
            assert_eq!(c.key(i as ComboId), *key);
        }
        assert_eq!(c.intern(huge), id);
    }
}
