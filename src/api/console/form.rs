//! A console form's body, read as the API reads its bodies: only after the session is checked
//! (this extractor comes last), bounded in size and time, of its declared type; then decoded.
//! Anything else is an error page, and nothing is applied.

use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::page::ConsoleError;
use crate::api::body::read;
use crate::api::AppState;

/// What HTML forms send.
const FORM: &str = "application/x-www-form-urlencoded";

/// The decoded fields of a form POST.
pub struct Posted<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ConsoleError> {
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !declared.is_some_and(|t| t.eq_ignore_ascii_case(FORM)) {
            let message = format!("A form must be sent as {FORM}.");
            return Err(ConsoleError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message,
            ));
        }
        let bytes = read(&parts.headers, body, state.body_timeout).await?;
        serde_urlencoded::from_bytes(&bytes)
            .map(Posted)
            .map_err(|e| ConsoleError::bad_request(format!("This form cannot be read: {e}.")))
    }
}
