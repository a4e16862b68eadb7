//! Requests that arrive together, served together: callers queue an item each, and whichever
//! takes the one turn serves every item waiting (at most the batch size) on a task of its own,
//! then hands the turn on. At low load an item is served at once, alone; under load the items
//! that arrive while a batch is in flight go together in the next, so the cost per item falls
//! as the load rises instead of the queue growing.
//!
//! The batch runs on a spawned task: a client that hangs up cancels neither its own item nor
//! the others of the batch. Each caller gets exactly its own answer.

use crate::error::ApiError;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// One queued item and where its answer goes.
pub struct Waiting<T, R> {
    pub item: T,
    answer: oneshot::Sender<Result<R, ApiError>>,
}

impl<T, R> Waiting<T, R> {
    /// Answers this item's caller (who may have gone: then nobody hears it).
    pub fn answer(self, outcome: Result<R, ApiError>) {
        let _ = self.answer.send(outcome);
    }
}

/// Items waiting, and the turn to serve them.
pub struct Batcher<T, R> {
    waiting: Mutex<VecDeque<Waiting<T, R>>>,
    turn: Arc<tokio::sync::Mutex<()>>,
    max: usize,
}

impl<T, R> std::fmt::Debug for Batcher<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("waiting", &self.lock().len())
            .field("max", &self.max)
            .finish()
    }
}

impl<T, R> Batcher<T, R> {
    /// At most `max` items per batch.
    pub fn new(max: usize) -> Self {
        Self {
            waiting: Mutex::new(VecDeque::new()),
            turn: Arc::new(tokio::sync::Mutex::new(())),
            max: max.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Waiting<T, R>>> {
        // A poisoned lock only means a thread panicked mid-push; the queue is still a queue.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Vec<Waiting<T, R>> {
        let mut waiting = self.lock();
        let n = waiting.len().min(self.max);
        waiting.drain(..n).collect()
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Queues `item` and waits for its answer. When this caller takes the turn, `serve` gets
    /// the batch (in arrival order, this item among them or not) and must answer every item.
    pub async fn submit<F, Fut>(&self, item: T, mut serve: F) -> Result<R, ApiError>
    where
        F: FnMut(Vec<Waiting<T, R>>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (answer, mut answered) = oneshot::channel();
        self.lock().push_back(Waiting { item, answer });
        loop {
            tokio::select! {
                biased;
                outcome = &mut answered => {
                    // Dropped unanswered only if the batch's task panicked.
                    return outcome.unwrap_or_else(|_| Err(ApiError::internal("a batch was dropped")));
                }
                turn = self.turn.clone().lock_owned() => {
                    let batch = self.take();
                    if batch.is_empty() {
                        // Taken by the previous turn, which has answered it.
                        continue;
                    }
                    let work = serve(batch);
                    tokio::spawn(async move {
                        work.await;
                        drop(turn);
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Serving = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

    /// Serves a batch by doubling each item, after a pause that lets others queue behind it.
    fn doubler(batches: Arc<AtomicUsize>) -> impl FnMut(Vec<Waiting<u32, u32>>) -> Serving {
        move |batch| {
            let batches = batches.clone();
            Box::pin(async move {
                batches.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                for waiting in batch {
                    let doubled = waiting.item * 2;
                    waiting.answer(Ok(doubled));
                }
            })
        }
    }

    #[tokio::test]
    async fn items_arriving_together_share_batches_and_each_gets_its_own_answer() {
        let batcher = Arc::new(Batcher::<u32, u32>::new(8));
        let batches = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..40u32)
            .map(|i| {
                let batcher = batcher.clone();
                let serve = doubler(batches.clone());
                tokio::spawn(async move { (i, batcher.submit(i, serve).await.unwrap()) })
            })
            .collect();
        for call in calls {
            let (i, doubled) = call.await.unwrap();
            assert_eq!(doubled, i * 2);
        }
        let batches = batches.load(Ordering::SeqCst);
        // 40 items, at most 8 per batch: at least 5 batches, and far fewer than 40.
        assert!((5..40).contains(&batches), "{batches} batches");
        assert_eq!(batcher.lock().len(), 0);
    }

    #[tokio::test]
    async fn a_caller_that_hangs_up_while_its_batch_runs_does_not_stop_the_others() {
        let batcher = Arc::new(Batcher::<u32, u32>::new(8));
        let started = Arc::new(AtomicUsize::new(0));
        // Each batch waits for a permit before answering, so the test decides when it ends.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let serve = {
            let (started, gate) = (started.clone(), gate.clone());
            move |batch: Vec<Waiting<u32, u32>>| {
                let (started, gate) = (started.clone(), gate.clone());
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    gate.acquire().await.unwrap().forget();
                    for waiting in batch {
                        let doubled = waiting.item * 2;
                        waiting.answer(Ok(doubled));
                    }
                }
            }
        };
        let call = |item: u32| {
            let (batcher, serve) = (batcher.clone(), serve.clone());
            tokio::spawn(async move { batcher.submit(item, serve).await })
        };
        let wait_for = |n: usize| {
            let started = started.clone();
            async move {
                while started.load(Ordering::SeqCst) < n {
                    tokio::task::yield_now().await;
                }
            }
        };
        let a = call(1);
        wait_for(1).await;
        // B and C queue behind A's batch; B takes the next turn and serves both.
        let b = call(2);
        let c = call(3);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(1);
        assert_eq!(a.await.unwrap().unwrap(), 2);
        wait_for(2).await;
        b.abort();
        gate.add_permits(1);
        assert_eq!(c.await.unwrap().unwrap(), 6);
        assert_eq!(started.load(Ordering::SeqCst), 2, "B and C went in one batch");
    }
}
