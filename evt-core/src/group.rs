//! Group commit, one home for every provider: requests that arrive while a batch of their kind
//! is on its way to the server wait for it and then go together, in one batch; a lone request
//! goes at once, alone, as it would without grouping.
//!
//! A provider makes one [`Batcher`] per kind of request (appends to one table, loads of one
//! collection) and gives [`Batcher::submit`] the function that sends a batch; answers travel in
//! the requests (their channels), so a provider decides what a batch's failure means for each
//! request in it. Batches are sent one after another by one task, so a batch never overtakes the
//! one before it (unless the provider lets several be on their way, [`Batcher::set_senders`]).
//! A provider may have a request that finds nothing on its way sent by its own caller
//! ([`Batcher::lead`]: PostgreSQL's and SQLite's appends), so a lone writer pays nothing for
//! grouping; MongoDB's requests always go through the task.

use std::future::Future;
use std::mem;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A queue of requests and the tasks sending them.
pub struct Batcher<R> {
    queue: Mutex<Queue<R>>,
    max_requests: usize,
    max_bytes: usize,
    max_senders: AtomicUsize,
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
        }
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

    /// Takes the next batch: at most `max_requests` requests and `max_bytes`, at least one.
    /// `None` (and no task sending any more) when nothing is pending.
    fn next_batch(&self) -> Option<Vec<R>> {
        let mut queue = self.lock();
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
}

impl<R: Send + 'static> Batcher<R> {
    /// Queues `request` (of `bytes` bytes); unless enough tasks are sending already, starts one that
    /// sends what is pending, batch after batch (`send`), until nothing is. The task is the
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
            // Made before the task, so that a task dropped before it first runs (or a spawn
            // that fails) still lets the next request start another.
            let sending = Sending {
                batcher: self.clone(),
                done: false,
            };
            spawn(sending, send);
        }
    }
}

/// Starts the task that sends batches, on the runtime of the caller. Outside a runtime (a future
/// dropped after its runtime shut down) it starts nothing: the `Sending` is dropped, which
/// closes the waiting requests' channels and frees its place.
fn spawn<R, F, Fut>(sending: Sending<R>, send: F)
where
    R: Send + 'static,
    F: Fn(Vec<R>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(sending.send_batches(send));
    }
}

impl<R: Send + 'static> Batcher<R> {
    /// When no batch is on its way and none waits, marks one as on its way and returns a guard:
    /// the caller then sends its own request at once, itself, with no task and no channel (a
    /// lone writer pays nothing for grouping). Requests submitted meanwhile wait; when the guard
    /// drops (also when the caller stops waiting), a task sends them with `send`, as
    /// [`Batcher::submit`] would. `None` when a batch is on its way: submit instead.
    ///
    /// The requests that arrive meanwhile wait for the guard: the caller must go on polling the
    /// future that holds it until its own request is done (or drop it), as an `async fn` that
    /// awaits its request does.
    pub fn lead<F, Fut>(self: &Arc<Self>, send: F) -> Option<Leading>
    where
        F: Fn(Vec<R>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        {
            let mut queue = self.lock();
            if queue.sending >= self.max_senders() || !queue.pending.is_empty() {
                return None;
            }
            queue.sending += 1;
        }
        let batcher = self.clone();
        Some(Leading {
            done: Some(Box::new(move || {
                let waiting = {
                    let mut queue = batcher.lock();
                    let waiting = !queue.pending.is_empty();
                    if !waiting {
                        queue.sending -= 1;
                    }
                    waiting
                };
                if waiting {
                    let sending = Sending {
                        batcher,
                        done: false,
                    };
                    spawn(sending, send);
                }
            })),
        })
    }
}

/// A request its caller sends itself while the others wait (see [`Batcher::lead`]); dropped,
/// it hands what waits to a task.
pub struct Leading {
    done: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Leading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leading").finish_non_exhaustive()
    }
}

impl Drop for Leading {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done();
        }
    }
}

/// The task sending batches. Dropped before it is done (its runtime shut down mid-batch), it
/// drops the waiting requests (their callers see their channels close) and lets the next
/// request start a new task.
struct Sending<R> {
    batcher: Arc<Batcher<R>>,
    done: bool,
}

impl<R> Sending<R> {
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
    use tokio::sync::oneshot;

    #[tokio::test]
    async fn requests_that_wait_go_together_and_each_gets_its_answer() {
        // One thread: the sending task first runs once all seven are queued.
        let batcher = Arc::new(Batcher::new(3, usize::MAX));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let mut answers = Vec::new();
        for n in 0..7u32 {
            let (answer, answered) = oneshot::channel();
            let sizes = sizes.clone();
            batcher.submit(
                (n, answer),
                0,
                move |batch: Vec<(u32, oneshot::Sender<u32>)>| {
                    let sizes = sizes.clone();
                    async move {
                        sizes.lock().unwrap().push(batch.len());
                        for (n, answer) in batch {
                            let _ = answer.send(n * 10);
                        }
                    }
                },
            );
            answers.push(answered);
        }
        for (n, answered) in answers.into_iter().enumerate() {
            assert_eq!(answered.await.unwrap(), n as u32 * 10);
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
        let batcher: Arc<Batcher<oneshot::Sender<usize>>> = Arc::new(Batcher::new(10, usize::MAX));
        let send = |batch: Vec<oneshot::Sender<usize>>| async move {
            let size = batch.len();
            for answer in batch {
                let _ = answer.send(size);
            }
        };
        let leading = batcher.lead(send).expect("nothing on its way");
        assert!(batcher.lead(send).is_none(), "one at a time");
        let (answer, answered) = oneshot::channel();
        batcher.submit(answer, 0, send);
        assert_eq!(batcher.pending(), 1, "waits for the leader");
        drop(leading);
        assert_eq!(
            answered.await.unwrap(),
            1,
            "sent by a task once the leader is done"
        );
        tokio::task::yield_now().await;
        let again = batcher.lead(send);
        assert!(again.is_some(), "free again");
    }

    #[test]
    fn a_batch_stops_at_its_byte_limit_but_takes_at_least_one() {
        let batcher = Batcher::new(10, 100);
        {
            let mut queue = batcher.lock();
            queue.sending = 1;
            queue.pending = vec![(1, 150), (2, 60), (3, 30), (4, 20)];
        }
        assert_eq!(batcher.next_batch(), Some(vec![1]));
        assert_eq!(batcher.next_batch(), Some(vec![2, 3]));
        assert_eq!(batcher.next_batch(), Some(vec![4]));
        assert_eq!(batcher.next_batch(), None);
        assert_eq!(batcher.lock().sending, 0);
    }
}
