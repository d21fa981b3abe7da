//! Query-string parameters that several endpoints read the same way.

use std::collections::HashMap;

use super::error::ApiError;

/// `?limit=`: 1 to `max`, `default` when absent; anything else is a 400 naming the field.
pub fn limit(
    params: &HashMap<String, String>,
    max: usize,
    default: usize,
) -> Result<usize, ApiError> {
    match params.get("limit") {
        None => Ok(default),
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => {
                let message = format!("limit must be 1 to {max}");
                Err(ApiError::bad_request(message).with_field("limit"))
            }
        },
    }
}
