use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderValue, Response, StatusCode};

use super::{classify_error, Classification, Classify};

/// Classifies `http::Response`s by status code.
///
/// | status | outcome | retryable |
/// |---|---|---|
/// | 1xx, 2xx, 3xx | success | no |
/// | 408, 429 | failure | yes |
/// | other 4xx | success (the client's fault, not the server's) | no |
/// | 502, 503, 504 | failure | yes |
/// | other 5xx | failure | no |
///
/// `Retry-After` (delta-seconds or HTTP-date) on any response becomes the retry hint;
/// garbage values are ignored. Errors are judged by [`classify_error`].
///
/// ```
/// use palisade_core::classify::{Classify, HttpClassifier};
/// use std::time::Duration;
///
/// let res = http::Response::builder().status(503).header("retry-after", "3").body(()).unwrap();
/// let c = HttpClassifier::new().classify(&Ok::<_, std::convert::Infallible>(res));
/// assert!(c.is_failure() && c.is_retryable());
/// assert_eq!(c.retry_after(), Some(Duration::from_secs(3)));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpClassifier {
    _priv: (),
}

impl HttpClassifier {
    /// The classifier with the rules in the table above.
    pub const fn new() -> Self {
        Self { _priv: () }
    }

    /// Classifies a status code alone (no hint).
    pub fn classify_status(status: StatusCode) -> Classification {
        match status.as_u16() {
            408 | 429 | 502..=504 => Classification::retryable_failure(),
            500..=599 => Classification::failure(),
            _ => Classification::success(),
        }
    }
}

impl<B, E: 'static> Classify<Response<B>, E> for HttpClassifier {
    fn classify(&self, result: &Result<Response<B>, E>) -> Classification {
        match result {
            Ok(res) => Self::classify_status(res.status())
                .with_retry_after(res.headers().get(RETRY_AFTER).and_then(parse_retry_after)),
            Err(e) => classify_error(e),
        }
    }
}

/// Parses a `Retry-After` value, delta-seconds or HTTP-date, relative to the system clock.
///
/// `None` for garbage; a date in the past is `Some(Duration::ZERO)`.
pub fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    parse_retry_after_at(value, SystemTime::now())
}

/// Parses a `Retry-After` value relative to `now` (for tests and replay).
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use palisade_core::classify::parse_retry_after_at;
/// use http::HeaderValue;
///
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
/// let date = HeaderValue::from_static("Sun, 06 Nov 1994 08:50:07 GMT");
/// assert_eq!(parse_retry_after_at(&date, now), Some(Duration::from_secs(30)));
/// assert_eq!(parse_retry_after_at(&HeaderValue::from_static("120"), now), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after_at(&HeaderValue::from_static("soon"), now), None);
/// ```
pub fn parse_retry_after_at(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let s = value.to_str().ok()?.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        // Absurdly long digit strings saturate rather than fail.
        return Some(Duration::from_secs(s.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(s).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}
