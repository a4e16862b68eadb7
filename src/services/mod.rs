//! Use cases. Services own transactions, call the domain and the repositories, and return
//! domain types or an `ApiError`. No HTTP types here.

pub mod audit;
pub mod auth;
pub mod batch;
pub mod billing;
pub mod bootstrap;
pub mod bulk_settings;
pub mod checkins;
pub mod connectwise;
pub mod device_directory;
pub mod device_queue;
pub mod device_reads;
pub mod devices;
pub mod drafts;
pub mod effective;
pub mod enrollment;
pub mod field_audit;
pub mod impact;
pub mod keys;
pub mod operators;
pub mod policies;
pub mod policy_edit;
pub mod policy_status;
pub mod policy_transfer;
pub mod policy_versions;
pub mod pull;
pub mod references;
pub mod registration;
pub mod registration_queue;
pub mod report;
pub mod reregistrations;
pub mod rollouts;
pub mod served_audit;
pub mod sessions;
pub mod tenants;
pub mod ui_sessions;

use crate::db::repo::Written;
use crate::error::{ApiError, Code};
use uuid::Uuid;

/// One page of a cursor-paginated list.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back as `cursor` to get the next page; `None` on the last page.
    pub next_cursor: Option<Uuid>,
}

/// Which page to read: items after `cursor`, at most `limit` of them.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub cursor: Option<Uuid>,
    pub limit: u64,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: u64 = 50;
    pub const MAX_LIMIT: u64 = 200;

    /// Reads one more row than asked for, to know whether a next page exists.
    pub fn fetch_limit(&self) -> u64 {
        self.limit + 1
    }

    pub fn page<T>(&self, mut rows: Vec<T>, id_of: impl Fn(&T) -> Uuid) -> Page<T> {
        let more = rows.len() as u64 > self.limit;
        rows.truncate(self.limit as usize);
        let next_cursor = if more { rows.last().map(&id_of) } else { None };
        Page {
            items: rows,
            next_cursor,
        }
    }
}

/// Maps a unique-constraint violation to a 409 with `detail`; any other error is internal.
pub fn conflict_if_duplicate(detail: String) -> impl FnOnce(sea_orm::DbErr) -> ApiError {
    move |error| {
        if crate::db::repo::is_unique_violation(&error) {
            ApiError::conflict(detail)
        } else {
            ApiError::internal(error)
        }
    }
}

/// Turns the outcome of a conditional write into the value or the matching error.
pub fn written<T>(outcome: Written<T>, what: &str) -> Result<T, ApiError> {
    match outcome {
        Written::Done(value) => Ok(value),
        Written::Missing => Err(ApiError::not_found(what)),
        Written::Stale => Err(ApiError::new(
            Code::PreconditionFailed,
            format!("the {what} changed since you read it; read it again and reapply your change"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_page_has_a_cursor_and_a_short_one_has_none() {
        let request = PageRequest {
            cursor: None,
            limit: 2,
        };
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let page = request.page(ids.clone(), |id| *id);
        assert_eq!(page.items, ids[..2]);
        assert_eq!(page.next_cursor, Some(ids[1]));

        let last = request.page(ids[..2].to_vec(), |id| *id);
        assert_eq!(last.items.len(), 2);
        assert_eq!(last.next_cursor, None);
    }
}
