//! The domain: one provider, the aggregate cache, and loading aggregates from their events.

use std::any::Any;
use std::num::NonZeroUsize;
use std::sync::Arc;

use futures_util::TryStreamExt;

use tracing::Instrument;

use crate::cache::Cache;
use crate::provider::{NewEvent, Provider, Snapshot};
use crate::{
    Aggregate, Error, Event, Handler, MemoryProvider, Metadata, Projection, Upcasters, Versioned,
};

/// One provider and what the aggregates share over it (evtstore's `createDomain`).
///
/// Cheap to clone; every clone shares the provider and the cache. Any type with
/// `#[aggregate]` can be loaded and commanded through it: the type is the registration.
#[derive(Clone, Debug)]
pub struct Domain {
    provider: Arc<dyn Provider>,
    cache: Option<Arc<Cache>>,
    metadata: Arc<Metadata>,
    upcasters: Option<Arc<Upcasters>>,
}

impl Domain {
    /// A domain over `provider`, without cache.
    pub fn new(provider: impl Provider) -> Self {
        Self::from_arc(Arc::new(provider))
    }

    /// A domain over a shared provider.
    pub fn from_arc(provider: Arc<dyn Provider>) -> Self {
        Domain {
            provider,
            cache: None,
            metadata: Metadata::none(),
            upcasters: None,
        }
    }

    /// Reads stored events through `upcasters`, in loads and in the handlers made by
    /// [`Domain::handler`]: history of an earlier shape reads as the current one. See
    /// [`Upcasters`].
    #[must_use]
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = (!upcasters.is_empty()).then(|| Arc::new(upcasters));
        self
    }

    /// This domain, appending with `metadata`: every event that commands through it append
    /// carries it ([`crate::Meta::metadata`] in handlers). Make one per request, from what the
    /// request says; it shares the provider and the cache.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use evt_core::{Domain, MemoryProvider, Versioned, event, aggregate};
    /// # #[event] #[derive(Debug, Clone)] pub enum CountEvent { Counted }
    /// # #[derive(Clone, Default)] pub struct Count;
    /// # #[aggregate(stream = "counts", events = CountEvent)] impl Count { fn counted(&mut self, _: &Counted) {} }
    /// use evt_core::Metadata;
    ///
    /// let domain = Domain::new(MemoryProvider::new());
    /// let request = domain.with_metadata(Metadata::new().correlation_id("req-1").user("alice"));
    /// request.append(Versioned::<Count>::new("c"), vec![Counted.into()]).await.unwrap();
    /// let stored = domain.provider().aggregate_events("counts", "c", 0, 10).await.unwrap();
    /// assert_eq!(stored[0].meta.metadata.user.as_deref(), Some("alice"));
    /// # }
    /// ```
    #[must_use]
    pub fn with_metadata(&self, metadata: Metadata) -> Self {
        Domain {
            metadata: Arc::new(metadata),
            ..self.clone()
        }
    }

    /// The metadata this domain appends with (empty unless set by [`Domain::with_metadata`]).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Keeps up to `capacity` loaded aggregates in memory (evtstore's `useCache`, but bounded:
    /// the least recently used leaves first). [`Domain::load`] brings a cached aggregate up to
    /// date by reading only the events after its version.
    ///
    /// A command whose payload is `Clone` (so that it can be decided twice) decides on the cached
    /// aggregate without reading and appends at its version: one round trip. When another writer
    /// appended meanwhile, the store refuses that version, and the command loads the new events
    /// and decides again; a rejection on the cached aggregate is also checked on a fresh load.
    /// The caller never sees an answer that a fresh load would not have given; the command's
    /// function may run twice (once on the cached aggregate, once on the fresh one), so it
    /// should decide without side effects.
    ///
    /// ```
    /// use evt_core::{Domain, MemoryProvider};
    ///
    /// let domain = Domain::new(MemoryProvider::new()).with_cache(10_000);
    /// # let _ = domain;
    /// ```
    #[must_use]
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.cache = NonZeroUsize::new(capacity).map(|capacity| Arc::new(Cache::new(capacity)));
        self
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    /// An event handler running `projection` over this domain's provider (evtstore's `createHandler`).
    pub fn handler<P: Projection>(&self, projection: P) -> Handler<P> {
        Handler::new(self.provider.clone(), projection).upcasting(self.upcasters.clone())
    }

    /// Loads an aggregate: from the cache or its snapshot when there is one, then every later event.
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<Versioned<A>, Error> {
        let span = tracing::debug_span!("evt.load", stream = A::STREAM, aggregate_id = id);
        async {
            let cached = self.cache.as_ref().and_then(|cache| cache.get::<A>(id));
            let mut aggregate = match cached {
                Some(aggregate) => aggregate,
                None => match self.load_snapshot::<A>(id).await? {
                    Some(aggregate) => aggregate,
                    None => Versioned::new(id),
                },
            };
            self.catch_up(&mut aggregate).await?;
            if let Some(cache) = &self.cache {
                cache.put(&aggregate);
            }
            Ok(aggregate)
        }
        .instrument(span)
        .await
    }

    /// The cached aggregate, if the cache is on and holds it (not brought up to date).
    pub(crate) fn cached<A: Aggregate>(&self, id: &str) -> Option<Versioned<A>> {
        self.cache.as_ref()?.get::<A>(id)
    }

    /// Reads and folds the aggregate's events after its version, as the provider streams them;
    /// from a bare [`MemoryProvider`] without upcasters, from the events it keeps decoded
    /// ([`MemoryProvider::fold`]: the same events and errors, without a stream). A provider that
    /// wraps it takes the stream.
    async fn catch_up<A: Aggregate>(&self, aggregate: &mut Versioned<A>) -> Result<(), Error> {
        let provider: &dyn Any = &*self.provider;
        if self.upcasters.is_none()
            && let Some(memory) = provider.downcast_ref::<MemoryProvider>()
        {
            return memory.fold(aggregate);
        }
        let id = aggregate.id.clone();
        let mut events = self
            .provider
            .aggregate_stream(A::STREAM, &id, aggregate.version);
        while let Some(event) = events.try_next().await? {
            match &self.upcasters {
                Some(upcasters) => aggregate.apply(&*upcasters.apply(&event)?)?,
                None => aggregate.apply(&event)?,
            }
        }
        Ok(())
    }

    async fn load_snapshot<A: Aggregate>(&self, id: &str) -> Result<Option<Versioned<A>>, Error> {
        let Some(version) = A::SNAPSHOT else {
            return Ok(None);
        };
        let Some(snapshot) = self.provider.snapshot(A::STREAM, id).await? else {
            return Ok(None);
        };
        if snapshot.snapshot_version != version {
            tracing::debug!(
                stream = A::STREAM,
                aggregate_id = id,
                stored = snapshot.snapshot_version,
                current = version,
                "snapshot version changed; folding from the first event"
            );
            return Ok(None);
        }
        match A::from_snapshot(&snapshot.state) {
            Ok(state) => Ok(Some(Versioned {
                id: id.to_owned(),
                version: snapshot.version,
                state,
            })),
            Err(error) => {
                tracing::warn!(
                    stream = A::STREAM,
                    aggregate_id = id,
                    %error,
                    "snapshot does not decode; folding from the first event"
                );
                Ok(None)
            }
        }
    }

    /// Appends `events` to `aggregate` at its version and folds them in; returns the new aggregate.
    /// With snapshots on, the new state is stored with the last event.
    ///
    /// Fails with [`Error::VersionConflict`] when another writer appended first. With no events,
    /// returns the aggregate unchanged.
    pub async fn append<A: Aggregate>(
        &self,
        mut aggregate: Versioned<A>,
        events: Vec<A::Event>,
    ) -> Result<Versioned<A>, Error> {
        if events.is_empty() {
            return Ok(aggregate);
        }
        let new_events = events
            .iter()
            .map(|event| {
                let data = event.to_json().map_err(|source| Error::Encode {
                    what: format!("event `{}`", event.event_type()),
                    stream: A::STREAM.to_owned(),
                    aggregate_id: aggregate.id.clone(),
                    source,
                })?;
                let mut new = NewEvent::new(event.event_type(), data);
                new.metadata = self.metadata.clone();
                Ok(new)
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let stored_version = aggregate.version;
        aggregate.version += events.len() as u64;
        let count = events.len();
        for event in events {
            aggregate.state.fold(event);
        }
        let snapshot = match A::SNAPSHOT {
            Some(snapshot_version) => Some(Snapshot {
                snapshot_version: snapshot_version.to_owned(),
                version: aggregate.version,
                state: aggregate
                    .state
                    .to_snapshot()
                    .map_err(|source| Error::Encode {
                        what: "snapshot".to_owned(),
                        stream: A::STREAM.to_owned(),
                        aggregate_id: aggregate.id.clone(),
                        source,
                    })?,
            }),
            None => None,
        };
        let span = tracing::debug_span!(
            "evt.append",
            stream = A::STREAM,
            aggregate_id = aggregate.id,
            version = stored_version,
            events = count
        );
        self.provider
            .append_only(
                A::STREAM,
                &aggregate.id,
                stored_version,
                &new_events,
                snapshot.as_ref(),
            )
            .instrument(span)
            .await?;
        if let Some(cache) = &self.cache {
            cache.put(&aggregate);
        }
        Ok(aggregate)
    }
}
