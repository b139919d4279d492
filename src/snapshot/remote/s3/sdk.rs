//! How the S3 store talks to the SDK: time bounds and retries, the
//! endpoint and its checksums, the store's clock, and what an SDK error
//! means to the caller.

use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_types::service_config::ServiceConfigKey;

use super::super::store::{StoreError, StoreErrorKind};

/// S3 refuses more parts than this in one upload.
const MAX_PARTS: u64 = 10_000;
/// Attempts of one request when `AWS_MAX_ATTEMPTS` does not say.
const DEFAULT_ATTEMPTS: u32 = 5;
/// The slowest transfer a call waits for before it gives up (bytes/s).
pub(super) const MIN_RATE: u64 = 256 << 10;
/// The most bytes a request's time bound allows for.
const MAX_TIMED: u64 = 1 << 30;
/// Time every request may take on top of its bytes at `MIN_RATE`.
const BASE_ATTEMPT: Duration = Duration::from_secs(30);
/// One line: newlines of a server's message would break our messages.
pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(super) fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// The SDK error's chain of causes, without the debug dump of the request
/// and answer that `DisplayErrorContext` appends.
fn error_chain<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: std::error::Error + 'static,
{
    let full = DisplayErrorContext(e).to_string();
    let dump = format!(" ({e:?})");
    let chain = full.strip_suffix(&dump).unwrap_or(&full);
    chain.chars().take(300).collect()
}

/// The store error for a failed call `op` on `what` (an `s3://` URL).
pub(super) fn sdk_error<E>(op: &str, what: &str, e: &SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use StoreErrorKind::*;
    let status = status(e);
    let code = e.code();
    let detail = match (code, e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_owned(),
        (None, _) => match (status, e) {
            // An answer the SDK could not read: its error says why.
            (Some(s), _) if s < 300 || matches!(e, SdkError::ResponseError(_)) => {
                format!("HTTP status {s}: {}", error_chain(e))
            }
            (Some(s), _) => format!("HTTP status {s}"),
            (None, SdkError::TimeoutError(_)) => "no answer in time".to_owned(),
            (None, _) => error_chain(e),
        },
    };
    let kind = match (code, status) {
        (Some("NoSuchBucket"), _) => NoSuchBucket,
        (
            Some(
                "AccessDenied"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "InvalidToken"
                | "AllAccessDisabled"
                | "AccountProblem",
            ),
            _,
        )
        | (_, Some(401 | 403)) => AccessDenied,
        (
            Some(
                "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "RequestTimeout"
                | "ServiceUnavailable"
                | "InternalError",
            ),
            _,
        )
        | (_, Some(429 | 500..=599)) => Unavailable,
        (None, None) => match e {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => Unavailable,
            _ => Other,
        },
        _ => Other,
    };
    StoreError::new(kind, format!("S3 {op} {what}: {}", one_line(&detail)))
}

/// Whether an endpoint URL is one of AWS's own.
pub(super) fn is_aws_endpoint(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', ':', '?']).next().unwrap_or("");
    let host = host.to_ascii_lowercase();
    [".amazonaws.com", ".amazonaws.com.cn", ".api.aws"]
        .iter()
        .any(|d| host.ends_with(d))
}

/// The endpoint the standard configuration names for S3, if any
/// (`AWS_ENDPOINT_URL_S3`, the profile's `s3` service, `AWS_ENDPOINT_URL`).
pub(super) fn configured_endpoint(sdk: &aws_config::SdkConfig) -> Option<String> {
    let key = ServiceConfigKey::builder()
        .service_id("S3")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    sdk.service_config()
        .and_then(|c| c.load_config(key))
        .or_else(|| sdk.endpoint_url().map(str::to_owned))
}

pub(super) fn max_attempts() -> u32 {
    std::env::var("AWS_MAX_ATTEMPTS")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|n| (1..=20).contains(n))
        .unwrap_or(DEFAULT_ATTEMPTS)
}

/// Time bounds of a request moving `bytes`: each attempt, and the whole
/// call with its retries and their backoff.
pub(super) fn timeouts(bytes: u64, attempts: u32) -> TimeoutConfig {
    // A get's cap may be far above what comes: the bound stays finite.
    let attempt = BASE_ATTEMPT + Duration::from_secs(bytes.min(MAX_TIMED) / MIN_RATE);
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(attempt)
        .operation_timeout(attempt * attempts + Duration::from_secs(60))
        .build()
}

/// The parts' size: the configured one, larger when S3's part count limit
/// needs it.
pub(super) fn part_len(total: u64, part_size: u64) -> u64 {
    part_size.max(1).max(total.div_ceil(MAX_PARTS))
}

/// Records the `Date` of a response: the store's clock.
#[derive(Debug, Clone, Default)]
pub(super) struct DateProbe(pub(super) Arc<parking_lot::Mutex<Option<String>>>);

impl Intercept for DateProbe {
    fn name(&self) -> &'static str {
        "envelopefs-date-probe"
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(d) = context.response().headers().get("date") {
            *self.0.lock() = Some(d.to_owned());
        }
        Ok(())
    }
}

/// The object's whole size from `Content-Range: bytes 0-N/TOTAL`.
pub(super) fn range_total(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parts_and_ranges() {
        assert!(is_aws_endpoint("https://s3.eu-west-1.amazonaws.com"));
        assert!(is_aws_endpoint(
            "https://bucket.s3.cn-north-1.amazonaws.com.cn/x"
        ));
        assert!(!is_aws_endpoint("http://127.0.0.1:9000"));
        assert!(!is_aws_endpoint("https://amazonaws.com.evil.example"));
        assert_eq!(part_len(100, 8 << 20), 8 << 20);
        assert_eq!(part_len(MAX_PARTS * 10 + 1, 1), 11);
        assert_eq!(range_total("bytes 0-99/12345"), Some(12345));
        assert_eq!(range_total("bytes */0"), Some(0));
        assert_eq!(range_total("bytes 0-1/*"), None);
        assert_eq!(one_line("a\n b\r\nc"), "a b c");
    }
}
