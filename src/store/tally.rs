//! Per-key totals of one bucket, compact once the bucket's time has passed.
//!
//! An open hash map costs about 100 bytes per entry on this data (a 64-byte slot
//! for an id and a 16-byte-aligned `Agg`, at hashbrown's load factor). Past buckets
//! are read far more than written, so `seal` moves their entries into sorted
//! columns: the keys (2 bytes: see [`SortedKeys`]), and each field of the totals in
//! the narrowest integer that holds every value of that bucket's column (a column
//! of zeros takes nothing; requests per cell mostly fit a byte; costs are stored in
//! units of their greatest common divisor, since prices per token are round
//! numbers of picodollars). A binary search instead of a hash probe. A late row for a past bucket still lands exactly: in
//! place if its key is sealed (a column widens if the new total needs it), else in
//! the small open map until the next seal. A total too large for the sealed form
//! (over 9.2 million dollars, or 4.29 billion requests or tokens, in one bucket and
//! key) stays in the map.

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

/// One field of the sealed entries, index for index with the keys, in the
/// narrowest integer that holds all of its values.
#[derive(Debug, Clone, Default)]
enum Column {
    /// Every value is zero: nothing stored.
    #[default]
    Zero,
    U8(Vec<u8>),
    U16(Vec<u16>),
    /// Three bytes, little-endian: token counts of up to 16.7 million.
    U24(Vec<[u8; 3]>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    /// Six bytes, little-endian two's complement: costs of up to $140 in picodollars.
    I48(Vec<[u8; 6]>),
    I64(Vec<i64>),
}

const U24_MAX: i64 = (1 << 24) - 1;
const I48_MIN: i64 = -(1 << 47);
const I48_MAX: i64 = (1 << 47) - 1;

fn to_u24(x: i64) -> Option<[u8; 3]> {
    (0..=U24_MAX).contains(&x).then(|| {
        let b = x.to_le_bytes();
        [b[0], b[1], b[2]]
    })
}

fn from_u24(b: [u8; 3]) -> i64 {
    i64::from_le_bytes([b[0], b[1], b[2], 0, 0, 0, 0, 0])
}

fn to_i48(x: i64) -> Option<[u8; 6]> {
    (I48_MIN..=I48_MAX).contains(&x).then(|| {
        let b = x.to_le_bytes();
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    })
}

fn from_i48(b: [u8; 6]) -> i64 {
    // Shift up and back to carry the sign bit across the top two bytes.
    i64::from_le_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]]) >> 16
}

impl Column {
    /// The narrowest column for these values.
    fn of(values: &[i64]) -> Column {
        let (min, max) = values
            .iter()
            .fold((0i64, 0i64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        fn narrow<T: TryFrom<i64>>(values: &[i64]) -> Vec<T> {
            values
                .iter()
                .map(|v| T::try_from(*v).ok().expect("in range by min and max"))
                .collect()
        }
        if min == 0 && max == 0 {
            Column::Zero
        } else if min >= 0 && max <= i64::from(u8::MAX) {
            Column::U8(narrow(values))
        } else if min >= 0 && max <= i64::from(u16::MAX) {
            Column::U16(narrow(values))
        } else if min >= 0 && max <= U24_MAX {
            Column::U24(
                values
                    .iter()
                    .map(|v| to_u24(*v).expect("in range"))
                    .collect(),
            )
        } else if min >= 0 && max <= i64::from(u32::MAX) {
            Column::U32(narrow(values))
        } else if min >= i64::from(i32::MIN) && max <= i64::from(i32::MAX) {
            Column::I32(narrow(values))
        } else if min >= I48_MIN && max <= I48_MAX {
            // `map`, not `filter_map`: an exact size, so no slack in the vector.
            Column::I48(
                values
                    .iter()
                    .map(|v| to_i48(*v).expect("in range"))
                    .collect(),
            )
        } else {
            Column::I64(values.to_vec())
        }
    }

    fn get(&self, i: usize) -> i64 {
        match self {
            Column::Zero => 0,
            Column::U8(v) => i64::from(v[i]),
            Column::U16(v) => i64::from(v[i]),
            Column::U24(v) => from_u24(v[i]),
            Column::U32(v) => i64::from(v[i]),
            Column::I32(v) => i64::from(v[i]),
            Column::I48(v) => from_i48(v[i]),
            Column::I64(v) => v[i],
        }
    }

    /// Sets entry `i` of `len` to `x`, widening the column if `x` needs it.
    fn set(&mut self, i: usize, x: i64, len: usize) {
        let done = match self {
            Column::Zero => x == 0,
            Column::U8(v) => u8::try_from(x).map(|x| v[i] = x).is_ok(),
            Column::U16(v) => u16::try_from(x).map(|x| v[i] = x).is_ok(),
            Column::U24(v) => to_u24(x).map(|x| v[i] = x).is_some(),
            Column::U32(v) => u32::try_from(x).map(|x| v[i] = x).is_ok(),
            Column::I32(v) => i32::try_from(x).map(|x| v[i] = x).is_ok(),
            Column::I48(v) => to_i48(x).map(|x| v[i] = x).is_some(),
            Column::I64(v) => {
                v[i] = x;
                true
            }
        };
        if !done {
            let mut all: Vec<i64> = (0..len).map(|j| self.get(j)).collect();
            all[i] = x;
            *self = Column::of(&all);
        }
    }

    fn remove(&mut self, i: usize) {
        match self {
            Column::Zero => {}
            Column::U8(v) => drop(v.remove(i)),
            Column::U16(v) => drop(v.remove(i)),
            Column::U24(v) => drop(v.remove(i)),
            Column::U32(v) => drop(v.remove(i)),
            Column::I32(v) => drop(v.remove(i)),
            Column::I48(v) => drop(v.remove(i)),
            Column::I64(v) => drop(v.remove(i)),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Column::Zero => 0,
            Column::U8(v) => v.capacity(),
            Column::U16(v) => v.capacity() * 2,
            Column::U24(v) => v.capacity() * 3,
            Column::U32(v) => v.capacity() * 4,
            Column::I32(v) => v.capacity() * 4,
            Column::I48(v) => v.capacity() * 6,
            Column::I64(v) => v.capacity() * 8,
        }
    }
}

/// Sorted, distinct `u32` keys in two bytes each: the low 16 bits of every key, and
/// where each run of keys sharing their high 16 bits starts. Keys are dense ids (a
/// million combinations have 16 distinct high parts), so the run index is tiny and
/// a lookup is one index into it and a binary search within the run.
#[derive(Debug, Clone, Default)]
struct SortedKeys {
    /// `starts[h]..starts[h + 1]` are the indices of the keys whose high 16 bits
    /// are `h`; one entry more than the highest `h` present plus one (or empty).
    starts: Vec<u32>,
    lows: Vec<u16>,
}

impl SortedKeys {
    /// From keys sorted ascending, each once.
    fn from_sorted(keys: impl Iterator<Item = u32>) -> SortedKeys {
        let mut out = SortedKeys::default();
        for k in keys {
            let high = (k >> 16) as usize;
            // Close every run up to this key's: each starts where the keys so far end.
            while out.starts.len() <= high + 1 {
                out.starts.push(out.lows.len() as u32);
            }
            out.lows.push(k as u16);
            *out.starts.last_mut().expect("pushed above") = out.lows.len() as u32;
        }
        out.starts.shrink_to_fit();
        out.lows.shrink_to_fit();
        out
    }

    fn len(&self) -> usize {
        self.lows.len()
    }

    /// Like `slice::binary_search`: `Ok(index)` of `key`, or `Err(index)` where it
    /// would go.
    fn search(&self, key: u32) -> Result<usize, usize> {
        let high = (key >> 16) as usize;
        if high + 1 >= self.starts.len() {
            return Err(self.len());
        }
        let (from, to) = (self.starts[high] as usize, self.starts[high + 1] as usize);
        match self.lows[from..to].binary_search(&(key as u16)) {
            Ok(i) => Ok(from + i),
            Err(i) => Err(from + i),
        }
    }

    /// The keys in order.
    fn iter(&self) -> SortedKeysIter<'_> {
        SortedKeysIter {
            keys: self,
            next: 0,
            high: 0,
            run_end: self.starts.get(1).map_or(0, |e| *e as usize),
        }
    }

    fn remove(&mut self, i: usize) {
        self.lows.remove(i);
        for s in &mut self.starts {
            if *s as usize > i {
                *s -= 1;
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.starts.capacity() * std::mem::size_of::<u32>()
            + self.lows.capacity() * std::mem::size_of::<u16>()
    }
}

/// The keys of a [`SortedKeys`] in order: a plain loop over the low halves that
/// steps to the next run at each run's end.
struct SortedKeysIter<'a> {
    keys: &'a SortedKeys,
    next: usize,
    high: usize,
    run_end: usize,
}

impl Iterator for SortedKeysIter<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let low = *self.keys.lows.get(self.next)?;
        while self.next >= self.run_end {
            self.high += 1;
            self.run_end = self.keys.starts[self.high + 1] as usize;
        }
        self.next += 1;
        Some(((self.high as u32) << 16) | u32::from(low))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.keys.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for SortedKeysIter<'_> {}

/// The greatest common divisor of the values (1 if all are zero, or if it does not
/// fit an `i64`): the unit the cost column is stored in.
fn common_unit(values: &[i64]) -> i64 {
    fn gcd(mut a: u64, mut b: u64) -> u64 {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }
    let g = values.iter().fold(
        0u64,
        |g, v| if g == 1 { 1 } else { gcd(g, v.unsigned_abs()) },
    );
    i64::try_from(g).ok().filter(|g| *g > 0).unwrap_or(1)
}

/// The sealed entries: sorted keys and one column per field of their totals.
#[derive(Debug, Clone)]
struct Sealed {
    keys: SortedKeys,
    /// Costs in picodollars divided by `cost_unit`.
    cost: Column,
    /// The greatest common divisor of the costs (at least 1).
    cost_unit: i64,
    requests: Column,
    computed: Column,
    input_tokens: Column,
    output_tokens: Column,
}

impl Default for Sealed {
    fn default() -> Self {
        Sealed::from_sorted(&[])
    }
}

impl Sealed {
    /// From entries sorted by key.
    fn from_sorted(entries: &[(u32, PackedAgg)]) -> Sealed {
        let col = |f: fn(&PackedAgg) -> i64| {
            Column::of(&entries.iter().map(|(_, p)| f(p)).collect::<Vec<i64>>())
        };
        let (cost, cost_unit) = Self::cost_column(entries.iter().map(|(_, p)| p.cost_picos));
        Sealed {
            keys: SortedKeys::from_sorted(entries.iter().map(|(k, _)| *k)),
            cost,
            cost_unit,
            requests: col(|p| i64::from(p.requests)),
            computed: col(|p| i64::from(p.computed)),
            input_tokens: col(|p| i64::from(p.input_tokens)),
            output_tokens: col(|p| i64::from(p.output_tokens)),
        }
    }

    /// The cost column of these costs in picodollars, and its unit.
    fn cost_column(picos: impl Iterator<Item = i64>) -> (Column, i64) {
        let picos: Vec<i64> = picos.collect();
        let unit = common_unit(&picos);
        let scaled: Vec<i64> = picos.iter().map(|p| p / unit).collect();
        (Column::of(&scaled), unit)
    }

    fn cost_picos(&self, i: usize) -> i64 {
        // Exact: every stored cost was a multiple of the unit and fit an i64.
        self.cost.get(i) * self.cost_unit
    }

    fn set_cost(&mut self, i: usize, picos: i64) {
        let n = self.len();
        if picos % self.cost_unit == 0 {
            self.cost.set(i, picos / self.cost_unit, n);
        } else {
            // Not a multiple of the unit: re-divide by the new common divisor.
            let all: Vec<i64> = (0..n)
                .map(|j| if j == i { picos } else { self.cost_picos(j) })
                .collect();
            (self.cost, self.cost_unit) = Self::cost_column(all.into_iter());
        }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    /// Entry `i`'s total. The columns hold only what `PackedAgg::pack` accepted, so
    /// the counts fit 32 bits.
    fn get(&self, i: usize) -> PackedAgg {
        let count = |c: &Column| c.get(i) as u32;
        PackedAgg {
            cost_picos: self.cost_picos(i),
            requests: count(&self.requests),
            computed: count(&self.computed),
            input_tokens: count(&self.input_tokens),
            output_tokens: count(&self.output_tokens),
        }
    }

    fn set(&mut self, i: usize, p: &PackedAgg) {
        let n = self.len();
        self.set_cost(i, p.cost_picos);
        self.requests.set(i, i64::from(p.requests), n);
        self.computed.set(i, i64::from(p.computed), n);
        self.input_tokens.set(i, i64::from(p.input_tokens), n);
        self.output_tokens.set(i, i64::from(p.output_tokens), n);
    }

    fn remove(&mut self, i: usize) {
        self.keys.remove(i);
        for c in self.columns_mut() {
            c.remove(i);
        }
    }

    fn columns_mut(&mut self) -> [&mut Column; 5] {
        [
            &mut self.cost,
            &mut self.requests,
            &mut self.computed,
            &mut self.input_tokens,
            &mut self.output_tokens,
        ]
    }

    fn columns(&self) -> [&Column; 5] {
        [
            &self.cost,
            &self.requests,
            &self.computed,
            &self.input_tokens,
            &self.output_tokens,
        ]
    }

    fn entries(&self) -> impl Iterator<Item = (u32, PackedAgg)> + '_ {
        self.keys.iter().enumerate().map(|(i, k)| (k, self.get(i)))
    }

    fn heap_bytes(&self) -> usize {
        self.keys.heap_bytes() + self.columns().iter().map(|c| c.heap_bytes()).sum::<usize>()
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

/// Open keys at which a bucket still being written is sealed anyway (see
/// `Tally::seal_if_large`): a few hundred kilobytes of map.
const OPEN_KEYS_SEALED: usize = 4_096;

/// Totals per key (an interned name or a combination id). Every key is in exactly
/// one of the two parts.
#[derive(Debug, Clone, Default)]
pub(super) struct Tally {
    /// Sealed part: sorted keys and their totals, index for index.
    sealed: Sealed,
    /// Keys added since the last seal.
    open: FxHashMap<u32, Agg>,
}

impl Tally {
    /// Adds `a` to `key`'s total; true if the key is new here.
    pub(super) fn add(&mut self, key: u32, a: &Agg) -> bool {
        match self.sealed.keys.search(key) {
            Ok(i) => {
                let mut sum = self.sealed.get(i).unpack();
                sum.add(a);
                match PackedAgg::pack(&sum) {
                    Some(p) => self.sealed.set(i, &p),
                    None => {
                        // Outgrew the sealed form: back to the map, for good.
                        self.sealed.remove(i);
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
        let kept: Vec<(u32, PackedAgg)> = self
            .sealed
            .entries()
            .filter_map(|(k, p)| renamed(k).map(|n| (n, p)))
            .collect();
        debug_assert!(
            kept.windows(2).all(|w| w[0].0 < w[1].0),
            "the map keeps order"
        );
        self.sealed = Sealed::from_sorted(&kept);
        self.open = std::mem::take(&mut self.open)
            .into_iter()
            .filter_map(|(k, a)| renamed(k).map(|n| (n, a)))
            .collect();
    }

    /// Heap bytes held (capacity, not length: what the allocator gave).
    pub(super) fn heap_bytes(&self) -> usize {
        self.sealed.heap_bytes() + map_bytes::<u32, Agg>(self.open.capacity())
    }

    /// The keys, in no particular order.
    pub(super) fn keys(&self) -> impl Iterator<Item = u32> + '_ {
        self.sealed.keys.iter().chain(self.open.keys().copied())
    }

    pub(super) fn get(&self, key: u32) -> Option<Agg> {
        match self.sealed.keys.search(key) {
            Ok(i) => Some(self.sealed.get(i).unpack()),
            Err(_) => self.open.get(&key).copied(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.sealed.len() + self.open.len()
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
        let sealed = &self.sealed;
        sealed
            .keys
            .iter()
            .enumerate()
            .filter(move |(_, k)| keep(*k))
            .map(move |(i, k)| (k, sealed.get(i).unpack()))
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

    /// Seals if the open map has grown large beside the sealed part: a bucket still
    /// being written (the current hour) takes a burst of new keys at about 100
    /// bytes each in the map and about 13 sealed. Sealing costs a pass over the
    /// bucket, so the bar grows with it (a quarter of the sealed keys): amortised,
    /// each key is moved a constant number of times.
    pub(super) fn seal_if_large(&mut self) {
        if self.open.len() >= OPEN_KEYS_SEALED.max(self.sealed.len() / 4) {
            self.seal();
        }
    }

    /// Merges the open keys into the sorted columns and frees the map (but for the
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
        if fresh.is_empty() {
            return;
        }
        fresh.sort_unstable_by_key(|(k, _)| *k);
        // Disjoint sorted runs (a key is never in both parts): a two-way merge.
        let mut merged = Vec::with_capacity(self.sealed.len() + fresh.len());
        let mut old = self.sealed.entries().peekable();
        let mut new = fresh.into_iter().peekable();
        loop {
            let take_old = match (old.peek(), new.peek()) {
                (Some(o), Some(n)) => o.0 < n.0,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            merged.extend(if take_old { old.next() } else { new.next() });
        }
        drop(old);
        self.sealed = Sealed::from_sorted(&merged);
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

    #[test]
    fn columns_take_the_narrowest_width_and_widen_when_a_late_add_needs_it() {
        assert!(matches!(Column::of(&[0, 0, 0]), Column::Zero));
        assert!(matches!(Column::of(&[0, 255]), Column::U8(_)));
        assert!(matches!(Column::of(&[256, 1]), Column::U16(_)));
        assert!(matches!(Column::of(&[70_000]), Column::U24(_)));
        assert!(matches!(Column::of(&[1 << 24]), Column::U32(_)));
        assert!(matches!(Column::of(&[-1, 5]), Column::I32(_)));
        assert!(matches!(Column::of(&[1 << 40]), Column::I48(_)));
        assert!(matches!(Column::of(&[-(1 << 40), 0]), Column::I48(_)));
        assert!(matches!(Column::of(&[1 << 47]), Column::I64(_)));
        assert!(matches!(Column::of(&[i64::MIN]), Column::I64(_)));
        // Each width gives back exactly what it took, at its edges.
        for values in [
            vec![0, 1, U24_MAX, 65_536],
            vec![I48_MIN, -1, 0, 1, I48_MAX, -(1 << 40) - 12_345],
            vec![i64::MIN, i64::MAX, 0],
            vec![-1, i64::from(i32::MIN), i64::from(i32::MAX)],
        ] {
            let c = Column::of(&values);
            let back: Vec<i64> = (0..values.len()).map(|i| c.get(i)).collect();
            assert_eq!(back, values, "{c:?}");
        }

        // Sealed with one request and no computed rows per key: the counts take a
        // byte each, the computed column nothing. Late adds widen only what needs it.
        let mut t = Tally::default();
        for k in 0..100u32 {
            t.add(k, &agg(1_000, 1));
        }
        t.seal();
        let bytes_sealed = t.heap_bytes();
        assert!(matches!(t.sealed.computed, Column::Zero));
        assert!(matches!(t.sealed.requests, Column::U8(_)));
        let big = Agg {
            cost: Money::from_picos(-(1 << 40)),
            requests: 300,
            input_tokens: 5,
            output_tokens: 7,
            computed: 1,
        };
        t.add(42, &big);
        assert!(!t.has_open(), "a sealed key takes a late add in place");
        assert!(matches!(t.sealed.requests, Column::U16(_)));
        assert!(matches!(t.sealed.computed, Column::U8(_)));
        assert!(matches!(t.sealed.cost, Column::I48(_)));
        t.add(7, &agg(i128::from(i64::MAX) - 1_000, 0));
        assert!(matches!(t.sealed.cost, Column::I64(_)));
        assert_eq!(t.get(7).map(|a| a.cost.picos()), Some(i128::from(i64::MAX)));
        t.add(7, &agg(-(i128::from(i64::MAX)) + 1_000, 0));
        assert!(t.heap_bytes() > bytes_sealed);
        let mut want = agg(1_000, 1);
        want.add(&big);
        assert_eq!(t.get(42), Some(want));
        for k in (0..100u32).filter(|k| *k != 42) {
            assert_eq!(t.get(k), Some(agg(1_000, 1)), "key {k}");
        }
        // Renaming keeps every total and re-narrows to what is left.
        let map: Vec<u32> = (0..100u32)
            .map(|k| if k == 42 { u32::MAX } else { k })
            .collect();
        t.rename(&map);
        assert_eq!(t.len(), 99);
        assert!(matches!(t.sealed.requests, Column::U8(_)));
        assert!(matches!(t.sealed.computed, Column::Zero));
        assert_eq!(t.get(41), Some(agg(1_000, 1)));
    }

    #[test]
    fn sorted_keys_find_every_key_and_the_place_of_every_other() {
        // Runs of high parts 0, 1, 3 (none with 2) and 17, and one key per edge.
        let keys: Vec<u32> = [
            0,
            1,
            65_535,
            65_536,
            70_000,
            3 << 16,
            (3 << 16) + 9,
            17 << 16,
        ]
        .into_iter()
        .collect();
        let k = SortedKeys::from_sorted(keys.iter().copied());
        assert_eq!(k.len(), keys.len());
        assert_eq!(k.iter().collect::<Vec<_>>(), keys);
        for probe in [
            0,
            1,
            2,
            65_535,
            65_536,
            65_537,
            70_000,
            2 << 16,
            (3 << 16) + 5,
        ]
        .into_iter()
        .chain([
            (3 << 16) + 9,
            (3 << 16) + 10,
            17 << 16,
            (17 << 16) + 1,
            u32::MAX,
        ]) {
            assert_eq!(k.search(probe), keys.binary_search(&probe), "key {probe}");
        }
        let mut fewer = k.clone();
        let mut want = keys.clone();
        for i in [3, 0, 5] {
            fewer.remove(i);
            want.remove(i);
            assert_eq!(fewer.iter().collect::<Vec<_>>(), want);
            for probe in &keys {
                assert_eq!(
                    fewer.search(*probe),
                    want.binary_search(probe),
                    "key {probe}"
                );
            }
        }
        let none = SortedKeys::from_sorted(std::iter::empty());
        assert_eq!(none.search(7), Err(0));
        assert_eq!(none.iter().count(), 0);
        // Two bytes a key and a few run starts.
        assert_eq!(k.heap_bytes(), 8 * 2 + 19 * 4);
    }

    #[test]
    fn costs_are_stored_in_their_common_unit_and_stay_exact_when_it_changes() {
        assert_eq!(common_unit(&[2_500_000, 150_000, 0, -50_000]), 50_000);
        assert_eq!(common_unit(&[0, 0]), 1);
        assert_eq!(common_unit(&[]), 1);
        assert_eq!(common_unit(&[7, 3]), 1);
        assert_eq!(common_unit(&[i64::MIN]), 1, "2^63 does not fit");
        assert_eq!(common_unit(&[i64::MIN, 1 << 62]), 1 << 62);
        // Prices per token are round numbers of picodollars: $0.25 and $1.30 in
        // units of 50,000 fit a U24 column instead of six bytes.
        let mut t = Tally::default();
        t.add(1, &agg(250_000_000_000, 1));
        t.add(2, &agg(1_300_000_000_000, 3));
        t.add(3, &agg(0, 0));
        t.seal();
        assert_eq!(t.sealed.cost_unit, 50_000_000_000);
        assert!(
            matches!(t.sealed.cost, Column::U8(_)),
            "{:?}",
            t.sealed.cost
        );
        // A late cost that is not a multiple re-divides the column, exactly.
        t.add(2, &agg(-7, 0));
        assert_eq!(t.sealed.cost_unit, 1);
        t.add(3, &agg(50_000_000_000, 0));
        let cost = |t: &Tally, k| t.get(k).unwrap().cost.picos();
        assert_eq!(cost(&t, 1), 250_000_000_000);
        assert_eq!(cost(&t, 2), 1_299_999_999_993);
        assert_eq!(cost(&t, 3), 50_000_000_000);
        // In the unit's multiples again after a rename.
        t.add(2, &agg(7, 0));
        t.rename(&[0, 1, 2, 3]);
        assert_eq!(t.sealed.cost_unit, 50_000_000_000);
        assert_eq!(cost(&t, 2), 1_300_000_000_000);
    }

    #[test]
    fn a_bucket_still_written_seals_when_its_open_keys_grow_large() {
        let mut t = Tally::default();
        let mut want = Tally::default();
        for k in 0..(OPEN_KEYS_SEALED as u32 - 1) {
            t.add(k * 3, &agg(10, 1));
            want.add(k * 3, &agg(10, 1));
        }
        t.seal_if_large();
        assert!(t.has_open(), "under the bar: stays a map");
        t.add(1, &agg(10, 1));
        want.add(1, &agg(10, 1));
        t.seal_if_large();
        assert!(!t.has_open(), "at the bar: sealed");
        // More writes land exactly, in place or in the map until the next bar.
        for k in 0..20_000u32 {
            t.add(k, &agg(7, 1));
            want.add(k, &agg(7, 1));
            t.seal_if_large();
        }
        assert!(t.open.len() < OPEN_KEYS_SEALED.max(t.sealed.len() / 4));
        assert_eq!(sorted(&t), sorted(&want));
    }
}
