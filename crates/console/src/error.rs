//! Every way a console request fails, and the one place each becomes an HTTP
//! status and a page ([`ConsoleError::into_response`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tonic::Code;

use crate::i18n::Lang;
use crate::pages;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No console for this certificate (none, an RA's, a service's, revoked).
    #[error("login refused: {0}")]
    Login(String),
    /// The person may log in but not do this (an auditor filing a loss report).
    #[error("not allowed: {0}")]
    Forbidden(String),
    /// The CSRF token of a POST is missing or not this session's.
    #[error("the form's CSRF token is missing or not this session's; reload the page")]
    Csrf,
    /// Bad form input: the field is named, nothing was changed.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    #[error("not found: {0}")]
    NotFound(String),
    /// Two-person control: the requester cannot approve their own request.
    #[error("{0}")]
    SelfApproval(String),
    /// A refusal of a service we called, passed on.
    #[error("{service}: {code:?}: {message}")]
    Upstream { service: &'static str, code: Code, message: String },
    #[error("internal error: {0}")]
    Internal(String),
    /// The audit checkpoint key or record cannot be read.
    #[error("internal error: audit verification: {0}")]
    AuditFiles(#[from] audit::LoadError),
}

impl ConsoleError {
    pub fn field(field: &str, message: impl Into<String>) -> ConsoleError {
        ConsoleError::Field { field: field.to_owned(), message: message.into() }
    }

    /// A gRPC refusal of `service`.
    pub fn upstream(service: &'static str, status: tonic::Status) -> ConsoleError {
        ConsoleError::Upstream { service, code: status.code(), message: status.message().to_owned() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Login(_) | ConsoleError::Forbidden(_) | ConsoleError::Csrf => StatusCode::FORBIDDEN,
            ConsoleError::Field { .. } => StatusCode::BAD_REQUEST,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::SelfApproval(_) => StatusCode::CONFLICT,
            ConsoleError::Upstream { code, .. } => match code {
                Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
                Code::NotFound => StatusCode::NOT_FOUND,
                Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
                Code::PermissionDenied | Code::Unauthenticated => StatusCode::FORBIDDEN,
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            },
            ConsoleError::Internal(_) | ConsoleError::AuditFiles(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// As a page in `lang`.
    pub fn page(self, lang: Lang) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "console request failed");
        } else {
            tracing::info!(error = %self, status = status.as_u16(), "console request refused");
        }
        let mut response = axum::response::Html(pages::error_page(lang, status, &self).into_string()).into_response();
        *response.status_mut() = status;
        crate::security_headers(response.headers_mut());
        response
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        self.page(Lang::Ja)
    }
}

/// A handler's answer in the language of the request.
pub struct Localised(pub Lang, pub ConsoleError);

impl IntoResponse for Localised {
    fn into_response(self) -> Response {
        self.1.page(self.0)
    }
}
