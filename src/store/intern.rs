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
}
