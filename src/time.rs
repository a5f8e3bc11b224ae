//! Relative times as operators write them (`1h`, `30m`), for the history
//! CLI and API.

use chrono::{DateTime, Utc};

#[derive(Debug, thiserror::Error)]
pub enum SinceError {
    #[error("`{text}`: {source}")]
    Parse {
        text: String,
        source: humantime::DurationError,
    },
    #[error("`{0}`: too long ago")]
    OutOfRange(String),
}

/// `now` minus a duration like `1h` or `7d`.
pub fn since(ago: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, SinceError> {
    let d = humantime::parse_duration(ago).map_err(|source| SinceError::Parse {
        text: ago.to_string(),
        source,
    })?;
    let d = chrono::Duration::from_std(d).map_err(|_| SinceError::OutOfRange(ago.to_string()))?;
    now.checked_sub_signed(d)
        .ok_or_else(|| SinceError::OutOfRange(ago.to_string()))
}
