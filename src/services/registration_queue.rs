//! Registrations written together, one commit for all the devices enrolling at the same moment.
//!
//! A fleet enrolls in bursts. Each registration is checked and decided outside any transaction
//! (see `registration::register`); then it waits here, and whichever request takes the turn
//! writes every waiting registration (at most [`BATCH`]) in one transaction, in arrival order,
//! and answers each. So a burst costs one commit and one writer turn per batch instead of one
//! per device — on PostgreSQL also one hold of the enrollment token's row lock, which every
//! registration with that token takes.
//!
//! Nothing is weakened: each registration still counts its token's use with a conditional
//! increment in the transaction that creates its device, so a token is never over-used, across
//! replicas too. A registration refused inside the batch (token used up) wrote nothing. If a
//! write fails (a hardware id registering on two replicas at once, a decommissioned device),
//! the batch rolls back and each of its registrations is written again alone, so every request
//! gets exactly the answer it would have had alone.

use super::registration::{Prepared, Written, write};
use crate::db;
use crate::error::ApiError;
use crate::state::AppState;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// At most this many registrations per transaction: the writer turn stays short.
pub const BATCH: usize = 64;

struct Queued {
    prepared: Prepared,
    answer: oneshot::Sender<Result<Written, ApiError>>,
}

/// Registrations waiting to be written, and the turn to write them.
#[derive(Default)]
pub struct RegistrationQueue {
    waiting: Mutex<VecDeque<Queued>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for RegistrationQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrationQueue")
            .field("waiting", &self.lock().len())
            .finish()
    }
}

impl RegistrationQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Queued>> {
        // A poisoned lock only means a thread panicked mid-push; the queue is still a queue.
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Vec<Queued> {
        let mut waiting = self.lock();
        let n = waiting.len().min(BATCH);
        waiting.drain(..n).collect()
    }
}

/// Writes a registration with the others waiting at the same moment; its own outcome.
pub(super) async fn write_queued(state: &AppState, prepared: Prepared) -> Result<Written, ApiError> {
    let queue = &state.registrations;
    let (answer, mut answered) = oneshot::channel();
    queue.lock().push_back(Queued { prepared, answer });
    loop {
        tokio::select! {
            biased;
            written = &mut answered => {
                return written.unwrap_or_else(|_| Err(ApiError::internal("a registration batch was dropped")));
            }
            turn = queue.turn.clone().lock_owned() => {
                let batch = queue.take();
                if batch.is_empty() {
                    // Taken by the previous turn, which has answered it.
                    continue;
                }
                // On a task of its own: a client that hangs up cancels neither its own
                // registration nor the others of the batch.
                let state = state.clone();
                tokio::spawn(async move {
                    write_batch(&state, batch).await;
                    drop(turn);
                });
            }
        }
    }
}

async fn write_batch(state: &AppState, mut batch: Vec<Queued>) {
    let txn = match db::begin_write(&state.db).await {
        Ok(txn) => txn,
        Err(error) => {
            // Busy (or down) for all of them alike.
            let text = error.to_string();
            for queued in batch {
                let error = sea_orm::DbErr::Custom(text.clone());
                let _ = queued.answer.send(Err(error.into()));
            }
            return;
        }
    };
    let mut written = Vec::with_capacity(batch.len());
    let mut failure = None;
    for queued in &batch {
        match write(&txn, &queued.prepared).await {
            Ok(outcome) => written.push(outcome),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let failure = match failure {
        None => txn.commit().await.err().map(ApiError::from),
        Some(error) => {
            let _ = txn.rollback().await;
            Some(error)
        }
    };
    let Some(error) = failure else {
        for (queued, outcome) in batch.into_iter().zip(written) {
            let _ = queued.answer.send(Ok(outcome));
        }
        return;
    };
    if batch.len() == 1 {
        if let Some(queued) = batch.pop() {
            let _ = queued.answer.send(Err(error));
        }
        return;
    }
    // One of them failed (or the commit did): each alone, with its own answer.
    for queued in batch {
        let outcome = write_alone(state, &queued.prepared).await;
        let _ = queued.answer.send(outcome);
    }
}

async fn write_alone(state: &AppState, prepared: &Prepared) -> Result<Written, ApiError> {
    let txn = db::begin_write(&state.db).await?;
    let written = write(&txn, prepared).await?;
    txn.commit().await?;
    Ok(written)
}
