//! Name interning: each distinct name is stored once and referred to by a u32.

use rustc_hash::FxHashMap;

pub type NameId = u32;

#[derive(Debug, Default, Clone)]
pub struct Interner {
    names: Vec<Box<str>>,
    ids: FxHashMap<Box<str>, NameId>,
}

impl Interner {
    pub fn intern(&mut self, name: &str) -> NameId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as NameId;
        let boxed: Box<str> = name.into();
        self.names.push(boxed.clone());
        self.ids.insert(boxed, id);
        id
    }
    pub fn get(&self, name: &str) -> Option<NameId> {
        self.ids.get(name).copied()
    }
    pub fn name(&self, id: NameId) -> &str {
        self.names.get(id as usize).map(|s| &**s).unwrap_or("")
    }
    pub fn len(&self) -> usize {
        self.names.len()
    }
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Heap bytes held: each name twice (the list and the map's key) and the map.
    pub fn heap_bytes(&self) -> usize {
        let text: usize = self.names.iter().map(|n| n.len()).sum();
        2 * text
            + self.names.capacity() * std::mem::size_of::<Box<str>>()
            + super::tally::map_bytes::<Box<str>, NameId>(self.ids.capacity())
    }

    /// Keeps the names `keep` says (by id) and renumbers them densely in their old
    /// order; returns old id -> new id (`u32::MAX` for a dropped name).
    pub fn retain(&mut self, keep: &[bool]) -> Vec<NameId> {
        let mut map = vec![NameId::MAX; self.names.len()];
        let mut kept = Interner::default();
        for (id, name) in self.names.iter().enumerate() {
            if keep.get(id).copied().unwrap_or(false) {
                map[id] = kept.intern(name);
            }
        }
        *self = kept;
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_id() {
        let mut i = Interner::default();
        let a = i.intern("chat");
        let b = i.intern("summarize");
        assert_eq!(i.intern("chat"), a);
        assert_ne!(a, b);
        assert_eq!(i.name(b), "summarize");
        assert_eq!(i.get("nope"), None);
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn retain_renumbers_in_order() {
        let mut i = Interner::default();
        for n in ["a", "b", "c", "d"] {
            i.intern(n);
        }
        let map = i.retain(&[false, true, false, true]);
        assert_eq!(map, [NameId::MAX, 0, NameId::MAX, 1]);
        assert_eq!((i.name(0), i.name(1), i.len()), ("b", "d", 2));
        assert_eq!((i.get("a"), i.get("d")), (None, Some(1)));
        assert_eq!(i.intern("e"), 2);
    }
}
