//! Group commit, one home for every provider: requests that arrive while a batch of their kind
//! is on its way to the server wait for it and then go together, in one batch; a lone request
//! goes at once, alone, as it would without grouping.
//!
//! A provider makes one [`Batcher`] per kind of request (appends to one table, loads of one
//! collection) and gives it the function that sends a batch; answers travel in the requests
//! ([`Answered`], or a channel of the provider's own), so a provider decides what a batch's
//! failure means for each request in it. Batches are sent one after another by one task, so a
//! batch never overtakes the one before it (unless the provider lets several be on their way,
//! [`Batcher::set_senders`]). A request whose caller stopped waiting is left out of its batch.
//! Where the provider asks for it ([`Batcher::led_by_callers`]: PostgreSQL's and SQLite's
//! appends), a request that finds nothing on its way is sent by its own caller, with no task and
//! no channel, so a lone writer pays nothing for grouping; MongoDB's requests always go through
//! the task.

use std::future::Future;
use std::mem;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::oneshot;

/// A request a [`Batcher`] queues.
pub trait Request: Send + 'static {
    /// Whether its caller stopped waiting for it: a batch then leaves it out, unsent.
    fn abandoned(&self) -> bool;
}

/// A request and where its answer goes: what [`Batcher::run`] queues.
pub struct Answered<Q, A> {
    /// The request.
    pub request: Q,
    answer: oneshot::Sender<A>,
}

impl<Q, A> Answered<Q, A> {
    /// Gives the request's caller its answer (a caller that stopped waiting does not need it).
    pub fn answer(self, answer: A) {
        let _ = self.answer.send(answer);
    }
}

impl<Q: Send + 'static, A: Send + 'static> Request for Answered<Q, A> {
    fn abandoned(&self) -> bool {
        self.answer.is_closed()
    }
}

/// A queue of requests and the tasks sending them.
pub struct Batcher<R> {
    queue: Mutex<Queue<R>>,
    max_requests: usize,
    max_bytes: usize,
    max_senders: AtomicUsize,
    led_by_callers: bool,
}

struct Queue<R> {
    /// Each request with its size in bytes (0 where sizes do not matter).
    pending: Vec<(R, usize)>,
    /// How many senders (tasks, or a caller sending its own request) are at work; a task
    /// takes what is pending.
    sending: usize,
}

impl<R> std::fmt::Debug for Batcher<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (pending, sending) = {
            let queue = self.lock();
            (queue.pending.len(), queue.sending)
        };
        f.debug_struct("Batcher")
            .field("pending", &pending)
            .field("sending", &sending)
            .field("max_senders", &self.max_senders())
            .field("max_requests", &self.max_requests)
            .field("max_bytes", &self.max_bytes)
            .field("led_by_callers", &self.led_by_callers)
            .finish()
    }
}

impl<R> Batcher<R> {
    /// A batcher whose batches hold at most `max_requests` requests and `max_bytes` bytes (at
    /// least one request, whatever its size).
    pub fn new(max_requests: usize, max_bytes: usize) -> Self {
        Batcher {
            queue: Mutex::new(Queue {
                pending: Vec::new(),
                sending: 0,
            }),
            max_requests: max_requests.max(1),
            max_bytes,
            max_senders: AtomicUsize::new(1),
            led_by_callers: false,
        }
    }

    /// Has [`Batcher::run`] send a request that finds nothing on its way from its own caller, at
    /// once: no task, no channel. Requests that arrive meanwhile wait for it, then go in a batch.
    pub fn led_by_callers(mut self) -> Self {
        self.led_by_callers = true;
        self
    }

    /// Lets up to `senders` batches be on their way at once (at least 1, the default): where the
    /// store runs requests side by side and orders them itself (PostgreSQL's appends take the
    /// table's lock only to insert), a second batch can be read and planned while the first
    /// holds the lock. With more than one, batches may overtake one another.
    pub fn set_senders(&self, senders: usize) {
        self.max_senders.store(senders.max(1), Ordering::Relaxed);
    }

    fn max_senders(&self) -> usize {
        self.max_senders.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue<R>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many requests wait for a batch.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }
}

impl<R: Request> Batcher<R> {
    /// Takes the next batch: at most `max_requests` requests and `max_bytes`, at least one,
    /// leaving out those whose callers stopped waiting. `None` (and one sender fewer) when
    /// nothing is pending.
    fn next_batch(&self) -> Option<Vec<R>> {
        let mut queue = self.lock();
        queue.pending.retain(|(request, _)| !request.abandoned());
        if queue.pending.is_empty() {
            queue.sending -= 1;
            return None;
        }
        let mut total = 0;
        let at = queue
            .pending
            .iter()
            .take(self.max_requests)
            .position(|(_, bytes)| {
                total += bytes;
                total > self.max_bytes
            })
            .unwrap_or(queue.pending.len().min(self.max_requests))
            .max(1);
        let rest = queue.pending.split_off(at);
        let batch = mem::replace(&mut queue.pending, rest);
        Some(batch.into_iter().map(|(request, _)| request).collect())
    }

    /// Queues `request` (of `bytes` bytes); unless enough tasks are sending already, starts one
    /// that sends what is pending, batch after batch (`send`), until nothing is. The task is the
    /// caller's only when it starts; a caller that stops waiting never strands the others.
    pub fn submit<F, Fut>(self: &Arc<Self>, request: R, bytes: usize, send: F)
    where
        F: Fn(Vec<R>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let start = {
            let mut queue = self.lock();
            queue.pending.push((request, bytes));
            let start = queue.sending < self.max_senders();
            if start {
                queue.sending += 1;
            }
            start
        };
        if start {
            self.start_sending(send);
        }
    }

    /// Starts the task that sends batches (its place in `sending` taken), on the runtime of the
    /// caller. Outside a runtime (a future dropped after its runtime shut down) it starts
    /// nothing: the `Sending` is dropped, which drops the waiting requests (their callers see
    /// their channels close) and frees its place.
    fn start_sending<F, Fut>(self: &Arc<Self>, send: F)
    where
        F: Fn(Vec<R>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        // Made before the task, so that a task dropped before it first runs still lets the next
        // request start another.
        let sending = Sending {
            batcher: self.clone(),
            done: false,
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(sending.send_batches(send));
        }
    }

    /// When fewer than `max_senders` senders are at work (with one: none) and no request
    /// waits, takes a sender's place for the caller: it sends its own request at once.
    /// Requests submitted meanwhile wait; when the returned guard drops (also when the caller
    /// stops waiting), a task sends them with `send`. `None` otherwise.
    fn lead<'a, F, Fut>(self: &'a Arc<Self>, send: &'a F) -> Option<impl Drop + 'a>
    where
        F: Fn(Vec<R>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        {
            let mut queue = self.lock();
            if queue.sending >= self.max_senders() || !queue.pending.is_empty() {
                return None;
            }
            queue.sending += 1;
        }
        Some(OnDrop(Some(move || {
            let waiting = {
                let mut queue = self.lock();
                let waiting = !queue.pending.is_empty();
                if !waiting {
                    queue.sending -= 1;
                }
                waiting
            };
            if waiting {
                self.start_sending(send.clone());
            }
        })))
    }
}

impl<Q: Send + 'static, A: Send + 'static> Batcher<Answered<Q, A>> {
    /// Makes `request` and returns its answer: a request over the batch's byte limit goes alone
    /// (`alone`, from this task), so that it fails only itself; with
    /// [`Batcher::led_by_callers`], so does a request that finds nothing on its way; any other
    /// waits with the requests beside it for a batch, which a task sends with `send`. `None`
    /// when its batch was abandoned before it answered (its runtime shut down, or `send`
    /// panicked).
    ///
    /// Requests that arrive while this one goes alone wait for it: the caller must go on
    /// polling this future until it is done (or drop it), as an `async fn` that awaits it does.
    pub async fn run<F, Fut, L, Alone>(
        self: &Arc<Self>,
        request: Q,
        bytes: usize,
        send: F,
        alone: L,
    ) -> Option<A>
    where
        F: Fn(Vec<Answered<Q, A>>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        L: FnOnce(Q) -> Alone,
        Alone: Future<Output = A>,
    {
        if bytes > self.max_bytes {
            return Some(alone(request).await);
        }
        if self.led_by_callers
            && let Some(_leading) = self.lead(&send)
        {
            return Some(alone(request).await);
        }
        let (answer, answered) = oneshot::channel();
        self.submit(Answered { request, answer }, bytes, send);
        answered.await.ok()
    }
}

/// Runs its function when dropped.
struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            done();
        }
    }
}

/// The task sending batches. Dropped before it is done (its runtime shut down mid-batch, or
/// `send` panicked), it drops the waiting requests (their callers see their channels close)
/// and lets the next request start a new task.
struct Sending<R> {
    batcher: Arc<Batcher<R>>,
    done: bool,
}

impl<R: Request> Sending<R> {
    async fn send_batches<F, Fut>(mut self, send: F)
    where
        F: Fn(Vec<R>) -> Fut,
        Fut: Future<Output = ()>,
    {
        while let Some(batch) = self.batcher.next_batch() {
            send(batch).await;
        }
        self.done = true;
    }
}

impl<R> Drop for Sending<R> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut queue = self.batcher.lock();
        queue.pending.clear();
        queue.sending -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Tagged = Answered<u32, (u32, usize)>;

    /// Answers each request with its number and the size of its batch, and notes the sizes.
    fn sender(
        sizes: &Arc<Mutex<Vec<usize>>>,
    ) -> impl Fn(Vec<Tagged>) -> std::future::Ready<()> + Clone + Send + 'static {
        let sizes = sizes.clone();
        move |batch: Vec<Tagged>| {
            let size = batch.len();
            sizes.lock().unwrap().push(size);
            for waiting in batch {
                let n = waiting.request;
                waiting.answer((n, size));
            }
            std::future::ready(())
        }
    }

    #[tokio::test]
    async fn requests_that_wait_go_together_and_each_gets_its_answer() {
        // One thread: the sending task first runs once all seven are queued.
        let batcher = Arc::new(Batcher::new(3, usize::MAX));
        let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
        let mut answers = Vec::new();
        for n in 0..7u32 {
            let (answer, answered) = oneshot::channel();
            batcher.submit(Answered { request: n, answer }, 0, sender(&sizes));
            answers.push(answered);
        }
        for (n, answered) in answers.into_iter().enumerate() {
            assert_eq!(answered.await.unwrap().0, n as u32);
        }
        assert_eq!(
            *sizes.lock().unwrap(),
            vec![3, 3, 1],
            "full batches, in order"
        );
        assert_eq!(batcher.pending(), 0);
        assert_eq!(batcher.lock().sending, 0, "the task ended with the queue");
    }

    #[tokio::test]
    async fn a_lone_request_is_sent_by_its_caller_and_what_waits_goes_after() {
        let batcher: Arc<Batcher<Tagged>> = Arc::new(Batcher::new(10, usize::MAX).led_by_callers());
        let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
        let (go, gone) = oneshot::channel::<()>();
        let lone = tokio::spawn({
            let (batcher, sizes) = (batcher.clone(), sizes.clone());
            async move {
                let alone = |n| async move {
                    gone.await.unwrap();
                    (n, 0)
                };
                batcher.run(1, 0, sender(&sizes), alone).await
            }
        });
        tokio::task::yield_now().await;
        assert_eq!(batcher.lock().sending, 1, "the lone caller sends");
        let waiting = tokio::spawn({
            let batcher = batcher.clone();
            let sizes = sizes.clone();
            async move {
                batcher
                    .run(2, 0, sender(&sizes), |_| async { unreachable!("it waits") })
                    .await
            }
        });
        tokio::task::yield_now().await;
        assert_eq!(batcher.pending(), 1, "waits for the lone caller");
        go.send(()).unwrap();
        assert_eq!(lone.await.unwrap(), Some((1, 0)), "sent alone");
        assert_eq!(
            waiting.await.unwrap(),
            Some((2, 1)),
            "sent by a task once the lone caller was done"
        );
        tokio::task::yield_now().await;
        assert_eq!(batcher.lock().sending, 0, "free again");
    }

    #[tokio::test]
    async fn a_request_whose_caller_stopped_waiting_is_left_out() {
        let batcher = Arc::new(Batcher::new(10, usize::MAX));
        let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
        let (answer, answered) = oneshot::channel();
        batcher.submit(Answered { request: 1, answer }, 0, sender(&sizes));
        drop(answered);
        let (answer, answered) = oneshot::channel();
        batcher.submit(Answered { request: 2, answer }, 0, sender(&sizes));
        assert_eq!(answered.await.unwrap(), (2, 1), "sent without the other");
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
    }

    #[test]
    fn a_batch_stops_at_its_byte_limit_but_takes_at_least_one() {
        let batcher = Batcher::new(10, 100);
        let mut answers = Vec::new();
        {
            let mut queue = batcher.lock();
            queue.sending = 1;
            for (n, bytes) in [(1, 150), (2, 60), (3, 30), (4, 20)] {
                let (answer, answered) = oneshot::channel::<()>();
                answers.push(answered);
                queue.pending.push((Answered { request: n, answer }, bytes));
            }
        }
        let next = || {
            batcher
                .next_batch()
                .map(|batch| batch.into_iter().map(|w| w.request).collect::<Vec<_>>())
        };
        assert_eq!(next(), Some(vec![1]));
        assert_eq!(next(), Some(vec![2, 3]));
        assert_eq!(next(), Some(vec![4]));
        assert_eq!(next(), None);
        assert_eq!(batcher.lock().sending, 0);
    }
}
