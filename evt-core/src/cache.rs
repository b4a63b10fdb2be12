//! The domain's opt-in aggregate cache: bounded, least recently used out first.

use std::any::{Any, TypeId};
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use lru::LruCache;

use crate::{Aggregate, Versioned};

/// Loaded aggregates of every type, keyed by type and id.
///
/// A hit is only a starting point: loading still reads the events after the cached version, and
/// a command that decides on a cached aggregate without reading appends at its version, which the
/// store refuses when another writer appended first (the command then loads and decides again).
/// So a stale entry never decides what is stored, even with other writers.
pub(crate) struct Cache {
    entries: Mutex<LruCache<(TypeId, String), Box<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Cache")
            .field("len", &entries.len())
            .field("capacity", &entries.cap())
            .finish()
    }
}

fn key<A: Aggregate>(id: &str) -> (TypeId, String) {
    (TypeId::of::<A>(), id.to_owned())
}

impl Cache {
    pub(crate) fn new(capacity: NonZeroUsize) -> Self {
        Cache {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    pub(crate) fn get<A: Aggregate>(&self, id: &str) -> Option<Versioned<A>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&key::<A>(id))
            .and_then(|entry| entry.downcast_ref::<Versioned<A>>())
            .cloned()
    }

    pub(crate) fn put<A: Aggregate>(&self, aggregate: &Versioned<A>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let key = key::<A>(&aggregate.id);
        // An entry for the aggregate is replaced in place (its key and box kept), unless it is
        // newer: a slow reader racing a writer never takes the cache back a version.
        if let Some(cached) = entries
            .get_mut(&key)
            .and_then(|entry| entry.downcast_mut::<Versioned<A>>())
        {
            if cached.version <= aggregate.version {
                cached.clone_from(aggregate);
            }
            return;
        }
        entries.put(key, Box::new(aggregate.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    #[derive(Debug, Clone, PartialEq)]
    struct Never;

    impl Event for Never {
        const TYPES: &'static [&'static str] = &[];
        fn event_type(&self) -> &'static str {
            ""
        }
        fn to_json(&self) -> Result<Box<serde_json::value::RawValue>, serde_json::Error> {
            serde_json::value::to_raw_value(&())
        }
        fn from_json(_: &str, _: &serde_json::value::RawValue) -> Result<Self, serde_json::Error> {
            Ok(Never)
        }
    }

    #[derive(Debug, Clone, Default, PartialEq)]
    struct Count(u64);

    impl Aggregate for Count {
        type Event = Never;
        const STREAM: &'static str = "counts";
        fn create() -> Self {
            Count(0)
        }
        fn fold(&mut self, _: Never) {}
    }

    fn at(id: &str, version: u64) -> Versioned<Count> {
        Versioned {
            id: id.to_owned(),
            version,
            state: Count(version),
        }
    }

    #[test]
    fn holds_at_most_its_capacity() {
        let cache = Cache::new(NonZeroUsize::new(2).unwrap());
        for id in ["a", "b", "c"] {
            cache.put(&at(id, 1));
        }
        assert_eq!(
            cache.get::<Count>("a"),
            None,
            "the least recently used left"
        );
        assert_eq!(cache.get::<Count>("b"), Some(at("b", 1)));
        assert_eq!(cache.get::<Count>("c"), Some(at("c", 1)));
    }

    #[test]
    fn never_goes_back_a_version() {
        let cache = Cache::new(NonZeroUsize::new(2).unwrap());
        cache.put(&at("a", 5));
        cache.put(&at("a", 3));
        assert_eq!(cache.get::<Count>("a"), Some(at("a", 5)));
        cache.put(&at("a", 6));
        assert_eq!(cache.get::<Count>("a"), Some(at("a", 6)));
    }
}
