//! DTOs shared by several resources.

use crate::domain::FieldError;
use crate::error::{ApiError, Code};
use crate::services::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Cursor pagination: pass `next_cursor` of one page as `cursor` to get the next.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Where the previous page ended.
    pub cursor: Option<Uuid>,
    /// Items per page, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u64>,
}

impl PageQuery {
    pub fn to_request(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(PageRequest::DEFAULT_LIMIT);
        if !(1..=PageRequest::MAX_LIMIT).contains(&limit) {
            let mut error = ApiError::new(
                Code::InvalidQuery,
                format!("limit must be between 1 and {}", PageRequest::MAX_LIMIT),
            );
            error.errors.push(FieldError::new(
                "limit",
                "out_of_range",
                "must be between 1 and 200",
            ));
            return Err(error);
        }
        Ok(PageRequest {
            cursor: self.cursor,
            limit,
        })
    }
}

/// One page of results.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageResponse<T: ToSchema> {
    pub items: Vec<T>,
    /// Cursor of the next page; absent on the last page.
    pub next_cursor: Option<Uuid>,
}

impl<T: ToSchema> PageResponse<T> {
    pub fn from_page<D>(page: Page<D>, to_dto: impl Fn(D) -> T) -> Self {
        Self {
            items: page.items.into_iter().map(to_dto).collect(),
            next_cursor: page.next_cursor,
        }
    }
}
