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

use super::batch::{Batcher, Waiting};
use super::registration::{Prepared, Written, write};
use crate::db;
use crate::error::ApiError;
use crate::state::AppState;

/// At most this many registrations per transaction: the writer turn stays short.
const BATCH: usize = 64;

/// Registrations waiting to be written, and the turn to write them.
#[derive(Debug)]
pub struct RegistrationQueue(Batcher<Prepared, Written>);

impl Default for RegistrationQueue {
    fn default() -> Self {
        Self(Batcher::new(BATCH))
    }
}

/// Writes a registration with the others waiting at the same moment; its own outcome.
pub(super) async fn write_queued(state: &AppState, prepared: Prepared) -> Result<Written, ApiError> {
    state
        .registrations
        .0
        .submit(prepared, |batch| {
            let state = state.clone();
            async move { write_batch(&state, batch).await }
        })
        .await
}

async fn write_batch(state: &AppState, mut batch: Vec<Waiting<Prepared, Written>>) {
    let txn = match db::begin_write(&state.db).await {
        Ok(txn) => txn,
        Err(error) => {
            // Busy (or down) for all of them alike.
            let error = ApiError::from(error);
            for waiting in batch {
                waiting.answer(Err(error.again()));
            }
            return;
        }
    };
    let mut written = Vec::with_capacity(batch.len());
    let mut failure = None;
    for waiting in &batch {
        match write(&txn, &waiting.item).await {
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
        for (waiting, outcome) in batch.into_iter().zip(written) {
            waiting.answer(Ok(outcome));
        }
        return;
    };
    if batch.len() == 1 {
        if let Some(waiting) = batch.pop() {
            waiting.answer(Err(error));
        }
        return;
    }
    // One of them failed (or the commit did): each alone, with its own answer.
    for waiting in batch {
        let outcome = write_alone(state, &waiting.item).await;
        waiting.answer(outcome);
    }
}

async fn write_alone(state: &AppState, prepared: &Prepared) -> Result<Written, ApiError> {
    let txn = db::begin_write(&state.db).await?;
    let written = write(&txn, prepared).await?;
    txn.commit().await?;
    Ok(written)
}
