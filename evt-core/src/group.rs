//! Group commit, one home for every provider: requests that arrive while a batch of their kind
//! is on its way to the server wait for it and then go together, in one batch; a lone request
//! goes at once, alone, as it would without grouping.
//!
//! A provider makes one [`Batcher`] per kind of request (appends to one table, loads of one
//! collection) and gives [`Batcher::submit`] the function that sends a batch; answers travel in
//! the requests (their channels), so a provider decides what a batch's failure means for each
//! request in it. Batches are sent one after another by one task, so a batch never overtakes the
//! one before it.

use std::future::Future;
use std::mem;
use std::sync::{Arc, Mutex, PoisonError};

/// A queue of requests and whether a task is sending them.
pub struct Batcher<R> {
    queue: Mutex<Queue<R>>,
    max_requests: usize,
    max_bytes: usize,
}

struct Queue<R> {
    /// Each request with its size in bytes (0 where sizes do not matter).
    pending: Vec<(R, usize)>,
    /// Whether a task is sending batches (and will take what is pending).
    sending: bool,
}

impl<R> std::fmt::Debug for Batcher<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("pending", &self.pending())
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
                sending: false,
            }),
            max_requests: max_requests.max(1),
            max_bytes,
        }
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
            queue.sending = false;
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
    /// Queues `request` (of `bytes` bytes); unless a task is sending already, starts one that
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
            !mem::replace(&mut queue.sending, true)
        };
        if start {
            // Made before the task, so that a task dropped before it first runs (or a spawn
            // that fails) still lets the next request start another.
            let sending = Sending {
                batcher: self.clone(),
                done: false,
            };
            tokio::spawn(sending.send_batches(send));
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
        queue.sending = false;
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
        assert!(!batcher.lock().sending, "the task ended with the queue");
    }

    #[test]
    fn a_batch_stops_at_its_byte_limit_but_takes_at_least_one() {
        let batcher = Batcher::new(10, 100);
        {
            let mut queue = batcher.lock();
            queue.sending = true;
            queue.pending = vec![(1, 150), (2, 60), (3, 30), (4, 20)];
        }
        assert_eq!(batcher.next_batch(), Some(vec![1]));
        assert_eq!(batcher.next_batch(), Some(vec![2, 3]));
        assert_eq!(batcher.next_batch(), Some(vec![4]));
        assert_eq!(batcher.next_batch(), None);
        assert!(!batcher.lock().sending);
    }
}
