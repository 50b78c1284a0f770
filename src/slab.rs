//! A keyed set: each entry gets a key when it is inserted, and removing it by that key
//! costs O(1) and removes exactly that entry. Freed keys are reused, so a set that
//! many waits pass through grows only to the most entries it ever held at once.

/// Entries under reusable keys.
pub(crate) struct Slab<T> {
    entries: Vec<Option<T>>,
    /// Keys of `None` entries, for reuse.
    free: Vec<usize>,
}

impl<T> Default for Slab<T> {
    fn default() -> Slab<T> {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T> Slab<T> {
    /// Stores `value` and returns its key.
    pub(crate) fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(key) => {
                debug_assert!(self.entries[key].is_none());
                self.entries[key] = Some(value);
                key
            }
            None => {
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    /// Removes the entry under `key` and gives it back; `None` if there is none.
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let value = self.entries.get_mut(key)?.take();
        if value.is_some() {
            self.free.push(key);
        }
        value
    }

    /// The entry under `key`.
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.entries.get_mut(key)?.as_mut()
    }

    /// Every entry, for an in-place pass.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.entries.iter_mut().flatten()
    }

    /// Entries stored now.
    pub(crate) fn len(&self) -> usize {
        self.entries.len() - self.free.len()
    }

    /// Keys ever handed out and not given back to the allocator: the set's size.
    pub(crate) fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// Takes every entry out, leaving the set empty.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = T> {
        self.free.clear();
        core::mem::take(&mut self.entries).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn removing_a_key_removes_exactly_its_entry_and_the_key_is_reused() {
        let mut slab = Slab::default();
        let (a, b) = (slab.insert('a'), slab.insert('b'));
        assert_eq!(slab.remove(a), Some('a'));
        assert_eq!(slab.remove(a), None, "removed twice");
        assert_eq!(slab.get_mut(b), Some(&mut 'b'));
        assert_eq!(slab.insert('c'), a, "the freed key is reused");
        assert_eq!((slab.len(), slab.capacity()), (2, 2));
        assert_eq!(slab.drain().collect::<String>(), "cb");
        assert_eq!((slab.len(), slab.capacity()), (0, 0));
    }
}
