//! The API's one error shape: `{"error": {"code": …, "message": …}}` with its HTTP status.
//! Every library error is mapped here once, so a handler only says `?`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::budget::report::BudgetError;
use crate::engine::{EngineError, RequestError};
use crate::spec::SpecError;
use crate::store::StoreError;
use crate::templates::{ManageError, TemplateError};

/// An error answer: status, a short machine-readable code, and a message for people.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// `not_found`, `invalid`, `conflict`, `unauthorized`, `forbidden`, `internal`, …
    pub code: &'static str,
    /// What happened and, where it helps, what to do.
    pub message: String,
}

impl ApiError {
    /// An error with its status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: the request conflicts with the execution's or file's state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 422: well-formed, but the content is invalid (a template, an artifact).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(_) => Self::not_found(e.to_string()),
            StoreError::Ambiguous { .. } => Self::bad_request(e.to_string()),
            StoreError::Lock(_) => Self::conflict(e.to_string()),
            StoreError::Spec(s) => s.into(),
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        Self::invalid(e.to_string())
    }
}

impl From<TemplateError> for ApiError {
    fn from(e: TemplateError) -> Self {
        match e {
            TemplateError::NotFound(_) => Self::not_found(e.to_string()),
            TemplateError::Spec(s) => s.into(),
        }
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::Template(t) => t.into(),
            ManageError::Spec(s) => s.into(),
            ManageError::Exists(_) | ManageError::BuiltIn(_) => Self::conflict(e.to_string()),
            ManageError::Store(s) => s.into(),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Store(s) => s.into(),
            RequestError::NoSuchPhase(_) => Self::not_found(e.to_string()),
            _ => Self::conflict(e.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(s) => s.into(),
            EngineError::Spec(s) => s.into(),
            EngineError::Template(t) => t.into(),
            EngineError::NotReady(_) | EngineError::Prompts(_) | EngineError::Project(_) => {
                Self::invalid(e.to_string())
            }
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<BudgetError> for ApiError {
    fn from(e: BudgetError) -> Self {
        match e {
            BudgetError::Store(s) => s.into(),
            BudgetError::Spec(s) => s.into(),
            BudgetError::NotPeriodic => Self::bad_request(e.to_string()),
        }
    }
}
