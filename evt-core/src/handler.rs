//! Event handlers: projections and process managers that follow streams from a bookmark.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use crate::Error;
use crate::error::BoxError;
use crate::lease::{self, Held};
use crate::provider::{Checkpoint, Lease, Provider, StoredEvent};
use crate::upcast::Upcasters;

/// Handlers for events of some streams, with the bookmark that records how far they got.
///
/// Implemented by `#[projection(bookmark = "...", streams = [...])]` on an impl block with one
/// method per event type.
pub trait Projection: Send + Sync + 'static {
    /// The bookmark's name, e.g. `"departments-model"`.
    const BOOKMARK: &'static str;
    /// The streams the handler reads, e.g. `&["departments"]`.
    const STREAMS: &'static [&'static str];
    /// The options set in the attribute; [`Handler`]'s builder methods override them.
    const OPTIONS: HandlerOptions = HandlerOptions::DEFAULT;
    /// For each stream whose event enum the projection knows, through the event types its methods
    /// take, that enum's type names ([`Event::TYPES`](crate::Event::TYPES)); an enum may appear
    /// more than once.
    ///
    /// A stored event of a listed stream whose type is not listed stops the handler, as it stops
    /// loading the aggregate, unless [`HandlerOptions::skip_unknown_events`] is on. Events of
    /// streams not listed are not checked. `#[projection]` lists the streams of its methods; the
    /// default lists none.
    const EVENT_TYPES: &'static [(&'static str, &'static [&'static str])] = &[];

    /// Runs the handler method for `event`'s stream and type, if the projection has one.
    fn handle(&self, event: &StoredEvent) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Where a handler starts and what it does when a handler method fails (evtstore's handler options).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerOptions {
    /// On the first start ever (no stored bookmark), begin at the end of the streams' history.
    pub tail_stream: bool,
    /// On every start, begin at the end of the streams' history.
    pub always_tail_stream: bool,
    /// Pass a failing event to the error callback and go on, instead of stopping at it.
    pub continue_on_error: bool,
    /// Pass over a stored event whose type the event enum of its stream does not know (a renamed
    /// or removed event type), instead of stopping at it.
    pub skip_unknown_events: bool,
}

impl HandlerOptions {
    /// Everything off: start at the bookmark, stop at a failing event or an unknown event type.
    pub const DEFAULT: HandlerOptions = HandlerOptions {
        tail_stream: false,
        always_tail_stream: false,
        continue_on_error: false,
        skip_unknown_events: false,
    };

    /// These options with [`HandlerOptions::tail_stream`] set to `on`.
    #[must_use]
    pub const fn with_tail_stream(mut self, on: bool) -> Self {
        self.tail_stream = on;
        self
    }

    /// These options with [`HandlerOptions::always_tail_stream`] set to `on`.
    #[must_use]
    pub const fn with_always_tail_stream(mut self, on: bool) -> Self {
        self.always_tail_stream = on;
        self
    }

    /// These options with [`HandlerOptions::continue_on_error`] set to `on`.
    #[must_use]
    pub const fn with_continue_on_error(mut self, on: bool) -> Self {
        self.continue_on_error = on;
        self
    }

    /// These options with [`HandlerOptions::skip_unknown_events`] set to `on`.
    ///
    /// ```
    /// use evt_core::HandlerOptions;
    /// const OPTIONS: HandlerOptions = HandlerOptions::DEFAULT
    ///     .with_tail_stream(true)
    ///     .with_skip_unknown_events(true);
    /// assert!(OPTIONS.tail_stream && !OPTIONS.continue_on_error);
    /// ```
    #[must_use]
    pub const fn with_skip_unknown_events(mut self, on: bool) -> Self {
        self.skip_unknown_events = on;
        self
    }
}

impl Default for HandlerOptions {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How often a started handler looks for events appended by other processes. Appends made
/// through the same provider value wake it at once.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(500);

/// How long a started handler's lease lasts without renewal: after its holder dies (kill -9) or
/// loses its connection, a standby takes over within this time plus a quarter of it. The holder
/// renews every third of it, so a lease survives two failed renewals (a database failover of a
/// second or two); a read model stops for at most a few seconds after a crash.
pub const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(5);

type ErrorCallback = Arc<dyn Fn(&Error) + Send + Sync>;

/// Runs a [`Projection`]: `run_once`, or `start`ed as a task until `stop`.
///
/// Cheap to clone; clones share the projection, the position and the task. The builder methods
/// (`tail_stream`, `lease_time`, ...) return a handler with the option changed: clones made
/// before, and a task already started, keep the options they had. (`memory_bookmark` makes a
/// handler of its own, sharing only the projection.) The bookmark is
/// stored after each page of events (and before reporting an error), so after a crash a
/// handler may see the last page again: write handlers that tolerate a repeat (upserts, `$set`).
#[must_use = "a handler does nothing until it is started or run"]
pub struct Handler<P> {
    inner: Arc<Inner<P>>,
    config: Arc<Config>,
}

impl<P> Clone for Handler<P> {
    fn clone(&self) -> Self {
        Handler {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<P: Projection> std::fmt::Debug for Handler<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("bookmark", &self.bookmark_name())
            .field("streams", &P::STREAMS)
            .finish_non_exhaustive()
    }
}

struct Inner<P> {
    projection: Arc<P>,
    provider: Arc<dyn Provider>,
    /// Where runs in this process got to, for [`Handler::wait_until_handled`].
    progress: watch::Sender<Progress>,
    run: tokio::sync::Mutex<RunState>,
    task: Mutex<Option<Task>>,
}

#[derive(Clone)]
struct Config {
    options: HandlerOptions,
    memory_bookmark: bool,
    poll_interval: Duration,
    lease_time: Option<Duration>,
    on_error: Option<ErrorCallback>,
    upcasters: Option<Arc<Upcasters>>,
}

#[derive(Default)]
struct RunState {
    /// The next load of the checkpoint goes on from the stored bookmark without tailing (after
    /// a lease was held again).
    resume_only: bool,
    /// Where the handler stands, once loaded; `None` makes the next run read the bookmark.
    checkpoint: Option<Checkpoint>,
    /// The stored checkpoint of an in-memory bookmark.
    memory: Option<Checkpoint>,
}

/// Where this process's runs of a handler got to.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// The position of the last event handled (and stored in the bookmark).
    position: u64,
    /// The event the last run stopped at, if it stopped at one: its position and the error.
    failed: Option<(u64, String)>,
}

/// A started handler's task: told to stop through `stop`, says it has stopped through `done`.
struct Task {
    stop: watch::Sender<bool>,
    done: watch::Receiver<bool>,
    /// The lease it holds, when it runs with one.
    held: Option<watch::Receiver<Option<Held>>>,
}

impl<P: Projection> Handler<P> {
    /// A handler over `provider`; [`crate::Domain::handler`] is the usual way to make one (with
    /// the domain's upcasters; see [`Handler::upcasters`]).
    pub fn new(provider: Arc<dyn Provider>, projection: P) -> Self {
        Handler {
            inner: Arc::new(Inner {
                projection: Arc::new(projection),
                provider,
                progress: watch::Sender::new(Progress::default()),
                run: tokio::sync::Mutex::default(),
                task: Mutex::default(),
            }),
            config: Arc::new(Config {
                options: P::OPTIONS,
                memory_bookmark: false,
                poll_interval: DEFAULT_POLL_INTERVAL,
                lease_time: Some(DEFAULT_LEASE_TIME),
                on_error: None,
                upcasters: None,
            }),
        }
    }

    fn config(&self) -> &Config {
        &self.config
    }

    /// This handler, reading stored events through `upcasters` (the domain's).
    pub(crate) fn upcasting(self, upcasters: Option<Arc<Upcasters>>) -> Self {
        self.with(|config| config.upcasters = upcasters)
    }

    /// Reads stored events through `upcasters` before handling them. A handler made by
    /// [`crate::Domain::handler`] has the domain's already; one made by [`Handler::new`] has
    /// none until given them here.
    pub fn upcasters(self, upcasters: Upcasters) -> Self {
        self.upcasting((!upcasters.is_empty()).then(|| Arc::new(upcasters)))
    }

    /// This handler with its options changed by `change`.
    fn with(mut self, change: impl FnOnce(&mut Config)) -> Self {
        change(Arc::make_mut(&mut self.config));
        self
    }

    /// On the first start ever (no stored bookmark), begin at the end of the streams' history.
    ///
    /// The end is stored as the bookmark at once, so a restart goes on from there and handles
    /// what was appended in between. (evtstore stores nothing until it handles an event, so
    /// its restart tails again and never handles those events.)
    pub fn tail_stream(self, on: bool) -> Self {
        self.with(|config| config.options.tail_stream = on)
    }

    /// On every start, begin at the end of the streams' history.
    pub fn always_tail_stream(self, on: bool) -> Self {
        self.with(|config| config.options.always_tail_stream = on)
    }

    /// Pass a failing event to the error callback and go on, instead of stopping at it.
    pub fn continue_on_error(self, on: bool) -> Self {
        self.with(|config| config.options.continue_on_error = on)
    }

    /// Pass over a stored event whose type the event enum of its stream does not know, instead of
    /// stopping at it (the default, as loading its aggregate fails). Such an event counts as
    /// handled and the bookmark moves past it; a document without a string `type` still stops
    /// the handler.
    pub fn skip_unknown_events(self, on: bool) -> Self {
        self.with(|config| config.options.skip_unknown_events = on)
    }

    /// Called with each error skipped under `continue_on_error` (by default they are logged).
    pub fn on_error(self, callback: impl Fn(&Error) + Send + Sync + 'static) -> Self {
        self.with(|config| config.on_error = Some(Arc::new(callback)))
    }

    /// Keep the bookmark in memory instead of the provider (evtstore's `MemoryBookmark`).
    ///
    /// The result is a handler of its own over the same projection: its position, its task and
    /// its bookmark are not shared with the handler it was made from (or that one's clones), so
    /// the two never move each other's position.
    pub fn memory_bookmark(self) -> Self {
        let inner = Arc::new(Inner {
            projection: self.inner.projection.clone(),
            provider: self.inner.provider.clone(),
            progress: watch::Sender::new(Progress::default()),
            run: tokio::sync::Mutex::default(),
            task: Mutex::default(),
        });
        Handler { inner, ..self }.with(|config| config.memory_bookmark = true)
    }

    /// How often a started handler polls for events appended by other processes.
    pub fn poll_interval(self, interval: Duration) -> Self {
        self.with(|config| config.poll_interval = interval)
    }

    /// How long a started handler's lease lasts ([`DEFAULT_LEASE_TIME`] unless set).
    ///
    /// A started handler with a stored bookmark handles events only while it holds the
    /// bookmark's lease, so that of all the instances of a service (processes, machines) that
    /// start it, one at a time handles events; the others wait as standbys and one takes over
    /// when the holder stops (at once), dies or loses its connection (within the lease time and
    /// a quarter). A holder that lost its lease can no longer store the bookmark, so it never
    /// moves back. Handling stays at least once: after a takeover, the events of the page the
    /// old holder was handling are handled again.
    pub fn lease_time(self, lease_time: Duration) -> Self {
        self.with(|config| config.lease_time = Some(lease_time.max(Duration::from_millis(10))))
    }

    /// Start without a lease: every started instance handles every event (one process only,
    /// or a provider without leases). [`Handler::run_once`] and in-memory bookmarks never use one.
    pub fn without_lease(self) -> Self {
        self.with(|config| config.lease_time = None)
    }

    /// Whether this started handler holds its bookmark's lease now (always `false` for a handler
    /// not started or started without one). Changes are also traced: `lease acquired`,
    /// `lease taken over ...`, `lease lost ...`, `lease released`, with the bookmark, holder
    /// name and epoch.
    pub fn holds_lease(&self) -> bool {
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        task.as_ref()
            .filter(|task| !*task.done.borrow())
            .and_then(|task| task.held.as_ref())
            .is_some_and(|held| held.borrow().as_ref().is_some_and(Held::is_valid))
    }

    /// The projection, taken out of a handler that has no clones and was never started.
    pub(crate) fn into_projection(self) -> Option<P> {
        Arc::try_unwrap(self.inner)
            .ok()
            .and_then(|inner| Arc::try_unwrap(inner.projection).ok())
    }

    /// The projection, e.g. to query its read model.
    pub fn projection(&self) -> &P {
        &self.inner.projection
    }

    fn bookmark_name(&self) -> &'static str {
        if self.config().memory_bookmark {
            "(memory)"
        } else {
            P::BOOKMARK
        }
    }

    /// Handles every event not handled yet, page by page, and returns how many events it moved
    /// past (as evtstore's `runOnce`: events without a handler method count too).
    ///
    /// Stops at the first failing event (its error names bookmark, stream, aggregate id, version and
    /// position; the bookmark stays before it), unless `continue_on_error` is on. An event fails
    /// when its handler method fails or its document does not decode, and also when its document
    /// has no string `type` or its type is unknown to the event enum of its stream, as loading
    /// its aggregate would (see [`Projection::EVENT_TYPES`] and [`Handler::skip_unknown_events`]).
    pub async fn run_once(&self) -> Result<usize, Error> {
        self.run_until(None, None, None).await
    }

    /// `run_once`, ending early, after a page, once `stop` says so; with a lease, only while
    /// it is held.
    async fn run_until(
        &self,
        stop: Option<&watch::Receiver<bool>>,
        lease: Option<&Lease>,
        held: Option<&watch::Receiver<Option<Held>>>,
    ) -> Result<usize, Error> {
        let span = tracing::debug_span!("evt.handler", bookmark = self.bookmark_name());
        let fence = lease.zip(held).map(|(lease, held)| Fence { lease, held });
        self.run_once_inner(stop, fence.as_ref())
            .instrument(span)
            .await
    }

    async fn run_once_inner(
        &self,
        stop: Option<&watch::Receiver<bool>>,
        fence: Option<&Fence<'_>>,
    ) -> Result<usize, Error> {
        let config = self.config.clone();
        let provider = &*self.inner.provider;
        let mut run = self.inner.run.lock().await;
        let mut checkpoint = match run.checkpoint.take() {
            Some(checkpoint) => checkpoint,
            None => self.load_checkpoint(&mut run, &config, fence).await?,
        };
        run.checkpoint = Some(checkpoint.clone());
        let limit = provider.page_size().max(1);
        let mut handled = 0;
        loop {
            self.check(fence)?;
            let events = provider.read_after(P::STREAMS, &checkpoint, limit).await?;
            let page_start = checkpoint.clone();
            for (event, after) in &events {
                if let Err(lost) = self.check(fence) {
                    self.save(&mut run, &config, fence, &page_start, &checkpoint)
                        .await?;
                    return Err(lost);
                }
                let upcast = match &config.upcasters {
                    Some(upcasters) => upcasters.apply(event),
                    None => Ok(Cow::Borrowed(&**event)),
                };
                let outcome = match upcast {
                    Err(error) => Err(BoxError::from(error)),
                    Ok(event) => match type_problem::<P>(&event) {
                        None => self.inner.projection.handle(&event).await,
                        Some(_)
                            if config.options.skip_unknown_events
                                && !event.event_type.is_empty() =>
                        {
                            tracing::debug!(
                                position = event.meta.position,
                                event_type = event.event_type,
                                "unknown event type skipped (skip_unknown_events)"
                            );
                            Ok(())
                        }
                        Some(problem) => Err(BoxError::from(problem)),
                    },
                };
                if let Err(source) = outcome {
                    let error = self.handler_error(event, source);
                    if !config.options.continue_on_error {
                        self.save(&mut run, &config, fence, &page_start, &checkpoint)
                            .await?;
                        self.inner.progress.send_replace(Progress {
                            position: checkpoint.position,
                            failed: Some((event.meta.position, error.to_string())),
                        });
                        return Err(error);
                    }
                    match &config.on_error {
                        Some(callback) => callback(&error),
                        None => tracing::warn!(%error, "handler error skipped (continue_on_error)"),
                    }
                }
                checkpoint = after.clone();
                run.checkpoint = Some(checkpoint.clone());
                handled += 1;
            }
            self.save(&mut run, &config, fence, &page_start, &checkpoint)
                .await?;
            let position = checkpoint.position;
            self.inner.progress.send_if_modified(|progress| {
                let moved = progress.position != position || progress.failed.is_some();
                *progress = Progress {
                    position,
                    failed: None,
                };
                moved
            });
            tracing::trace!(
                events = events.len(),
                position = checkpoint.position,
                "handler page done"
            );
            if events.len() < limit || stop.is_some_and(|stop| *stop.borrow()) {
                return Ok(handled);
            }
        }
    }

    fn handler_error(&self, event: &StoredEvent, source: BoxError) -> Error {
        let meta = &event.meta;
        Error::Handler {
            bookmark: self.bookmark_name(),
            stream: meta.stream.clone(),
            aggregate_id: meta.aggregate_id.clone(),
            version: meta.version,
            position: meta.position,
            event_type: event.event_type.clone(),
            source,
        }
    }

    /// [`Error::LeaseLost`] once the lease the run holds is no longer valid.
    fn check(&self, fence: Option<&Fence<'_>>) -> Result<(), Error> {
        match fence {
            Some(fence)
                if !fence
                    .held
                    .borrow()
                    .as_ref()
                    .is_some_and(|held| held.is_valid_for(fence.lease.epoch)) =>
            {
                Err(self.lease_lost(fence.lease))
            }
            _ => Ok(()),
        }
    }

    fn lease_lost(&self, lease: &Lease) -> Error {
        Error::LeaseLost {
            bookmark: P::BOOKMARK.to_owned(),
            holder: lease.holder.clone().unwrap_or_default(),
            epoch: lease.epoch,
        }
    }

    /// Where to start: the stored bookmark, or the end of history when tailing.
    async fn load_checkpoint(
        &self,
        run: &mut RunState,
        config: &Config,
        fence: Option<&Fence<'_>>,
    ) -> Result<Checkpoint, Error> {
        let stored = if config.memory_bookmark {
            run.memory.clone()
        } else {
            self.inner.provider.checkpoint(P::BOOKMARK).await?
        };
        let options = config.options;
        let tail = if std::mem::take(&mut run.resume_only) {
            (options.tail_stream || options.always_tail_stream) && stored.is_none()
        } else {
            options.always_tail_stream || (options.tail_stream && stored.is_none())
        };
        if tail {
            let end = self.inner.provider.last_checkpoint(P::STREAMS).await?;
            self.save(run, config, fence, &Checkpoint::at(u64::MAX), &end)
                .await?;
            return Ok(end);
        }
        Ok(stored.unwrap_or_default())
    }

    async fn save(
        &self,
        run: &mut RunState,
        config: &Config,
        fence: Option<&Fence<'_>>,
        before: &Checkpoint,
        checkpoint: &Checkpoint,
    ) -> Result<(), Error> {
        if checkpoint == before {
            return Ok(());
        }
        let provider = &self.inner.provider;
        if config.memory_bookmark {
            run.memory = Some(checkpoint.clone());
            Ok(())
        } else if let Some(fence) = fence {
            if provider
                .set_checkpoint_leased(P::BOOKMARK, checkpoint, fence.lease)
                .await?
            {
                Ok(())
            } else {
                run.checkpoint = None;
                Err(self.lease_lost(fence.lease))
            }
        } else {
            provider.set_checkpoint(P::BOOKMARK, checkpoint).await
        }
    }

    /// Waits until this handler, started in this process or in another one on the same store, has
    /// handled the last event of `aggregate` (a command's result), at most `timeout`: read your
    /// writes, instead of evtstore's advice to sleep 300 ms before querying a read model.
    ///
    /// ```no_run
    /// # use evt_core::{Handler, Projection, Versioned, Aggregate, Error};
    /// # async fn example<P: Projection, A: Aggregate>(model: Handler<P>, department: Versioned<A>) -> Result<(), Error> {
    /// // let department = departments.create("d-1", Create { .. }).await?;
    /// model.wait_until_handled(&department, std::time::Duration::from_secs(5)).await?;
    /// // the read model now shows department d-1
    /// # Ok(()) }
    /// ```
    ///
    /// The handler has handled the event once its bookmark (stored, or in this process's
    /// memory) is at or past the event's position, which this reads once. Fails with
    /// [`Error::NotHandled`] when the time is up (saying where the handler is), at once when a
    /// run of this handler in this process stopped at a failing event before it (saying which),
    /// and when the handler does not read the aggregate's stream. An aggregate without events
    /// needs no wait. On MongoDB, where positions do not follow commit order, an event that
    /// committed in the same moment as a later-positioned one may be reported handled a few
    /// milliseconds early.
    pub async fn wait_until_handled<A: crate::Aggregate>(
        &self,
        aggregate: &crate::Versioned<A>,
        timeout: Duration,
    ) -> Result<(), Error> {
        if aggregate.version == 0 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let not_handled = |reason: String| Error::NotHandled {
            bookmark: self.bookmark_name().to_owned(),
            stream: A::STREAM.to_owned(),
            aggregate_id: aggregate.id.clone(),
            version: aggregate.version,
            reason,
        };
        if !P::STREAMS.contains(&A::STREAM) {
            return Err(not_handled(format!(
                "the handler reads {:?}, not `{}`",
                P::STREAMS,
                A::STREAM
            )));
        }
        let provider = &self.inner.provider;
        let event = provider
            .aggregate_events(A::STREAM, &aggregate.id, aggregate.version - 1, 1)
            .await?;
        let Some(position) = event.first().map(|event| event.meta.position) else {
            return Err(not_handled(
                "the store has no event at that version".to_owned(),
            ));
        };
        let stored_bookmark = !self.config().memory_bookmark;
        let mut progress = self.inner.progress.subscribe();
        let poll = self.config().poll_interval.min(Duration::from_millis(20));
        loop {
            let local = progress.borrow_and_update().clone();
            if local.position >= position {
                return Ok(());
            }
            if let Some((at, error)) = local.failed.filter(|(at, _)| *at <= position) {
                return Err(not_handled(format!(
                    "the handler stopped at the event at position {at}: {error}"
                )));
            }
            let stored = match stored_bookmark {
                true => provider.position(P::BOOKMARK).await?.unwrap_or(0),
                false => 0,
            };
            if stored >= position {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(not_handled(format!(
                    "not within {timeout:?}: the event is at position {position}, the handler at {}",
                    local.position.max(stored)
                )));
            }
            tokio::select! {
                _ = progress.changed() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Forgets the position held in memory, so that the next run goes on from the stored bookmark
    /// (tailing only if there is none and a tail option is on).
    async fn resume_from_bookmark(&self) {
        let mut run = self.inner.run.lock().await;
        run.checkpoint = None;
        run.resume_only = true;
    }

    /// Forgets where the handler stands, as evtstore's `reset()`: the next run reads the stored
    /// bookmark again (and, with `always_tail_stream`, starts at the end again). With
    /// [`Handler::memory_bookmark`], whose bookmark is this memory, it starts from the beginning
    /// of the streams again (or, with `tail_stream`, at their end). A stored bookmark is not
    /// moved: storing a position is the provider's (`set_checkpoint`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # use evt_core::{Domain, MemoryProvider, Meta, event, aggregate, projection};
    /// # #[event] #[derive(Debug, Clone)] pub enum CountEvent { Counted }
    /// # #[derive(Clone, Default)] pub struct Count;
    /// # #[aggregate(stream = "counts", events = CountEvent)] impl Count { fn counted(&mut self, _: &Counted) {} }
    /// # #[derive(Default)] pub struct Seen;
    /// # #[projection(bookmark = "seen", streams = ["counts"])]
    /// # impl Seen { fn counted(&self, _: &str, _: &Counted, _: &Meta) {} }
    /// let domain = Domain::new(MemoryProvider::new());
    /// domain.append(evt_core::Versioned::<Count>::new("c"), vec![Counted.into()]).await.unwrap();
    /// let handler = domain.handler(Seen).memory_bookmark();
    /// assert_eq!(handler.run_once().await.unwrap(), 1);
    /// assert_eq!(handler.run_once().await.unwrap(), 0);
    /// handler.reset().await;
    /// assert_eq!(handler.run_once().await.unwrap(), 1); // from the beginning again
    /// # }
    /// ```
    pub async fn reset(&self) {
        let mut run = self.inner.run.lock().await;
        run.checkpoint = None;
        run.memory = None;
    }

    /// Forgets the position held in memory, so the next run reads the bookmark again.
    async fn forget_position(&self) {
        self.inner.run.lock().await.checkpoint = None;
    }

    /// Starts handling events in a tokio task, until [`Handler::stop`]. Does nothing if started.
    /// Call it inside a tokio runtime.
    ///
    /// The task wakes at once on appends through the same provider value, and polls every
    /// `poll_interval` for others. A failing event (or a panicking handler method) is logged and
    /// tried again after `poll_interval`, unless `continue_on_error` skips it; so is a failure of
    /// the storage (reading events or the bookmark, storing the bookmark). The task ends on
    /// [`Handler::stop`], or once every `Handler` value of it has been dropped.
    pub fn start(&self) {
        let mut task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if task.as_ref().is_some_and(|task| !*task.done.borrow()) {
            return;
        }
        let (stop, stopped) = watch::channel(false);
        let (finished, done) = watch::channel(false);
        let inner = Arc::downgrade(&self.inner);
        let provider = self.inner.provider.clone();
        let appended = provider.subscribe();
        let config = self.config.clone();
        let lease_time = config.lease_time.filter(|_| !config.memory_bookmark);
        let (held_sender, held) = watch::channel(None);
        let held = lease_time.map(|_| held);
        let runs = held.clone();
        tokio::spawn(async move {
            match lease_time {
                Some(lease_time) => {
                    let (ran, runner_done) = watch::channel(false);
                    let runner = async {
                        run_loop(inner, config, stopped, appended, runs).await;
                        ran.send_replace(true);
                    };
                    let keeper = lease::keep(
                        provider,
                        P::BOOKMARK,
                        lease::holder_name(),
                        lease_time,
                        held_sender,
                        runner_done,
                    );
                    tokio::join!(runner, keeper);
                }
                None => run_loop(inner, config, stopped, appended, None).await,
            }
            finished.send_replace(true);
        });
        *task = Some(Task { stop, done, held });
    }

    /// Stops a started handler after the page it is handling, and waits until it has stopped
    /// (and, with a lease, given it up, so that a standby takes over at once).
    pub async fn stop(&self) {
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|task| (task.stop.clone(), task.done.clone()));
        if let Some((stop, mut done)) = task {
            stop.send_replace(true);
            let _ = done.wait_for(|done| *done).await;
        }
    }

    /// Whether the handler was started and has not stopped.
    pub fn is_running(&self) -> bool {
        self.inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|task| !*task.done.borrow())
    }
}

/// Why `event` cannot go to a handler method of `P`: its document has no string `type`, or its
/// type is not one that `P::EVENT_TYPES` lists for its stream (when it lists the stream). The
/// same error as loading its aggregate gives.
fn type_problem<P: Projection>(event: &StoredEvent) -> Option<serde_json::Error> {
    let stream = event.meta.stream.as_str();
    let found = event.event_type.as_str();
    let known = || {
        P::EVENT_TYPES
            .iter()
            .filter(move |(listed, _)| *listed == stream)
            .flat_map(|(_, types)| types.iter().copied())
    };
    if !found.is_empty() && (known().next().is_none() || known().any(|known| known == found)) {
        return None;
    }
    let mut expected = Vec::new();
    for known in known() {
        if !expected.contains(&known) {
            expected.push(known);
        }
    }
    Some(crate::event::type_error(found, &event.data, &expected))
}

/// A started handler's loop. It holds the handler only while running a batch, so dropping every
/// `Handler` ends it.
async fn run_loop<P: Projection>(
    inner: Weak<Inner<P>>,
    config: Arc<Config>,
    mut stopped: watch::Receiver<bool>,
    mut appended: Option<watch::Receiver<u64>>,
    mut held: Option<watch::Receiver<Option<Held>>>,
) {
    match inner.upgrade() {
        Some(inner) => {
            let handler = Handler {
                inner,
                config: config.clone(),
            };
            handler.forget_position().await
        }
        None => return,
    }
    // The epoch of the lease the last run held: a new one means another holder may have moved
    // the bookmark since, so the next run reads it again.
    let mut last_lease: Option<Lease> = None;
    loop {
        if *stopped.borrow_and_update() {
            return;
        }
        let lease = match &mut held {
            Some(held) => {
                let lease = tokio::select! {
                    _ = stopped.changed() => return,
                    lease = held.wait_for(Option::is_some) => match lease {
                        Ok(lease) => lease.as_ref().map(|held| held.lease.clone()),
                        Err(_) => return,
                    },
                };
                let Some(lease) = lease else { return };
                let same = last_lease
                    .as_ref()
                    .is_some_and(|last| last.holder == lease.holder && last.epoch == lease.epoch);
                if !same {
                    if last_lease.is_some() {
                        // Held again after another holder may have moved the bookmark: go on
                        // from the stored bookmark (even with `always_tail_stream`, which
                        // applies when started, not here).
                        match inner.upgrade() {
                            Some(inner) => {
                                let config = config.clone();
                                Handler { inner, config }.resume_from_bookmark().await
                            }
                            None => return,
                        }
                    }
                    last_lease = Some(lease.clone());
                }
                Some(lease)
            }
            None => None,
        };
        if let Some(appended) = &mut appended {
            appended.borrow_and_update();
        }
        let Some(inner) = inner.upgrade() else { return };
        let handler = Handler {
            inner,
            config: config.clone(),
        };
        let poll_interval = handler.config().poll_interval;
        // In a task of its own, so that a panicking handler method is reported, not fatal.
        let until = stopped.clone();
        let fence = held.clone();
        let run = tokio::spawn(async move {
            handler
                .run_until(Some(&until), lease.as_ref(), fence.as_ref())
                .await
        })
        .await;
        let failed = match run {
            Ok(Ok(_)) => false,
            Ok(Err(Error::LeaseLost { epoch, .. })) => {
                // Lapsed (a slow renewal: wait until a renewal makes it valid again; its
                // compare-and-swap proves no one took it over) or refused by the store while
                // valid here (wait for the next renewal, which finds it lost, or for it to end).
                if let Some(held) = &mut held {
                    let now = held
                        .borrow()
                        .as_ref()
                        .map(|held| (held.is_valid_for(epoch), held.valid_until));
                    let (valid, until) = now.unwrap_or((false, tokio::time::Instant::now()));
                    let changed = |held: &Option<Held>| {
                        held.as_ref().is_none_or(|held| {
                            held.lease.epoch != epoch
                                || if valid {
                                    held.valid_until > until
                                } else {
                                    held.is_valid_for(epoch)
                                }
                        })
                    };
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = held.wait_for(changed) => {}
                    }
                }
                continue;
            }
            Ok(Err(error @ Error::Handler { .. })) => {
                tracing::error!(%error, "handler stopped at an event; trying again after the poll interval");
                true
            }
            Ok(Err(error)) => {
                // Reading a page or the bookmark, or storing the bookmark; the error says which.
                tracing::error!(%error, "handler stopped: the storage failed; trying again after the poll interval");
                true
            }
            Err(error) => {
                tracing::error!(%error, "a handler method panicked; trying again after the poll interval");
                true
            }
        };
        tokio::select! {
            _ = stopped.changed() => return,
            _ = changed(&mut appended), if !failed => {}
            _ = tokio::time::sleep(poll_interval) => {}
        }
    }
}

/// The lease a run holds, and where the keeper says whether it still holds it.
struct Fence<'a> {
    lease: &'a Lease,
    held: &'a watch::Receiver<Option<Held>>,
}

/// Resolves when the append signal changes; never, without one.
async fn changed(appended: &mut Option<watch::Receiver<u64>>) {
    if let Some(receiver) = appended
        && receiver.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}
