//! Upcasters: stored events of an earlier shape read as the current one.

use std::borrow::Cow;
use std::collections::HashMap as StdHashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::{BoxError, Error, StoredEvent};

/// How many upcasters one event may go through (a chain that renames back and forth stops here).
const MAX_STEPS: usize = 64;

/// Looked up once per event read: a fast hash (foldhash).
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;

type Upcast = dyn Fn(Value) -> Result<Value, BoxError> + Send + Sync;

/// Rewrites stored events of an earlier shape into the current one as they are read, so that
/// years of history keep loading after an event type changed: a field added (with a value for
/// the old events), renamed or removed, a type renamed, a type split by its content.
///
/// Each upcaster is declared once, for one stream and one stored type name, as a function from
/// the stored document (JSON, with its `"type"`) to the newer one. It runs on every read path
/// (loading an aggregate, including after a snapshot whose version changed, and handlers), on
/// the events of that stream and type only; the stored events are never rewritten. When the
/// new document's `type` is another type with upcasters of its own, those run next, so a chain
/// `v1 → v2 → v3` is one upcaster per step. (Within one type's list, an upcaster that renames
/// the type still hands its document to the list's next upcasters, then the new type's run.)
/// An event type without upcasters costs one map lookup.
///
/// An upcaster sees every stored event of its type, old and new: it must recognise the old
/// shape (a missing field, a field under its old name) and leave the new one as it is. Where
/// shapes cannot be told apart, give the new shape a field that says so (`schemaVersion`,
/// `#[serde(default)]`).
///
/// ```
/// use evt_core::{Domain, MemoryProvider, Upcasters};
/// use serde_json::{Value, json};
///
/// let upcasters = Upcasters::new()
///     // `departmentCreated` once had no `dataContext`: old departments were live ones.
///     .add("departments", "departmentCreated", |mut event: Value| {
///         if event.get("dataContext").is_none() {
///             event["dataContext"] = json!("live");
///         }
///         Ok(event)
///     })
///     // `managerAppointed` became `departmentManagerAdded`, its `phone` now `userPhone`.
///     .add("departments", "managerAppointed", |mut event: Value| {
///         let phone = event["phone"].take();
///         Ok(json!({"type": "departmentManagerAdded", "userPhone": phone}))
///     });
/// let domain = Domain::new(MemoryProvider::new()).with_upcasters(upcasters);
/// # let _ = domain;
/// ```
#[derive(Clone, Default)]
pub struct Upcasters {
    /// By stream, then by stored type name.
    by_stream: HashMap<String, HashMap<String, Vec<Arc<Upcast>>>>,
}

impl Upcasters {
    /// No upcasters.
    pub fn new() -> Self {
        Self::default()
    }

    /// These upcasters and one more: stored documents of type `event_type` in `stream` go
    /// through `upcast` as they are read. Upcasters of one type run in the order added. An
    /// upcaster's error (`Err("..".into())`, or any error through `?`) fails the read with
    /// [`Error::Upcast`].
    #[must_use]
    pub fn add(
        mut self,
        stream: &str,
        event_type: &str,
        upcast: impl Fn(Value) -> Result<Value, BoxError> + Send + Sync + 'static,
    ) -> Self {
        let upcast: Arc<Upcast> = Arc::new(upcast);
        self.by_stream
            .entry(stream.to_owned())
            .or_default()
            .entry(event_type.to_owned())
            .or_default()
            .push(upcast);
        self
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_stream.is_empty()
    }

    /// `event` in its current shape: itself when no upcaster applies, a new stored event (same
    /// place and metadata, new type and document) when one does.
    pub(crate) fn apply<'a>(&self, event: &'a StoredEvent) -> Result<Cow<'a, StoredEvent>, Error> {
        let Some(types) = self.by_stream.get(&event.meta.stream) else {
            return Ok(Cow::Borrowed(event));
        };
        let Some(mut upcasts) = types.get(&event.event_type) else {
            return Ok(Cow::Borrowed(event));
        };
        let failed = |event_type: &str, source: BoxError| Error::Upcast {
            stream: event.meta.stream.clone(),
            aggregate_id: event.meta.aggregate_id.clone(),
            version: event.meta.version,
            position: event.meta.position,
            event_type: event_type.to_owned(),
            source,
        };
        let mut event_type = event.event_type.clone();
        let mut value: Value =
            serde_json::from_str(event.data.get()).map_err(|e| failed(&event_type, e.into()))?;
        for _ in 0..MAX_STEPS {
            for upcast in upcasts {
                value = upcast(value).map_err(|e| failed(&event_type, e))?;
            }
            let next = match value.get("type") {
                Some(Value::String(next)) => next.clone(),
                _ => {
                    return Err(failed(
                        &event_type,
                        "the upcast document has no string `type`".into(),
                    ));
                }
            };
            let renamed = next != event_type;
            event_type = next;
            match types.get(&event_type) {
                Some(more) if renamed => upcasts = more,
                _ => {
                    let data = serde_json::value::to_raw_value(&value)
                        .map_err(|e| failed(&event_type, e.into()))?;
                    let upcast = StoredEvent::new(event.meta.clone(), event_type, data);
                    return Ok(Cow::Owned(upcast));
                }
            }
        }
        Err(failed(
            &event_type,
            format!("more than {MAX_STEPS} upcasts: do its upcasters rename types in a circle?")
                .into(),
        ))
    }
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (stream, types) in &self.by_stream {
            for (event_type, upcasts) in types {
                map.entry(&format_args!("{stream}/{event_type}"), &upcasts.len());
            }
        }
        map.finish()
    }
}
