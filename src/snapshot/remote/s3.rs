//! S3 or an S3-compatible service (MinIO, Ceph RGW, ...) as a repository of
//! remote snapshots (feature `s3`), through the official SDK on the same
//! rustls/ring transport as the `aws-kms` provider.
//!
//! The standard AWS configuration applies: the credential chain, region and
//! profile, and `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` for another
//! store. With an endpoint configured, buckets are addressed path-style
//! (`http://host/bucket/key`); with one that is not AWS's, request and
//! response checksums are only sent and checked where S3 requires them (the
//! SDK's default checksums are refused by several S3-compatible stores).
//! Throttling and 5xx answers retry with backoff (`AWS_MAX_ATTEMPTS`
//! attempts, 5 by default); every call is bounded in time, the bound growing
//! with the bytes it moves.

mod sdk;

use std::sync::atomic::{AtomicBool, Ordering};

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_smithy_types::date_time::Format;
use aws_smithy_types::DateTime;

use super::store::{
    ObjectInfo, ObjectStore, PutMode, PutOutcome, StoreError, StoreErrorKind, TransferOptions,
};
use sdk::{
    configured_endpoint, is_aws_endpoint, max_attempts, one_line, part_len, range_total, sdk_error,
    status, timeouts, DateProbe, MIN_RATE,
};

/// How often a conditional put that met a concurrent write (409) is retried.
const CONFLICT_TRIES: usize = 3;

pub struct S3Store {
    client: aws_sdk_s3::Client,
    rt: tokio::runtime::Runtime,
    bucket: String,
    /// The key prefix of the repository: empty, or ending in `/`.
    prefix: String,
    opts: TransferOptions,
    attempts: u32,
    /// Whether the SDK's default checksums are on (AWS itself).
    checksums: bool,
    /// A call has found the bucket (a 404 of a head then means the key).
    bucket_seen: AtomicBool,
}

/// Why a put did not write, when that is not a plain error.
enum PutFailure {
    /// 412: the object exists.
    Exists,
    /// 409 ConditionalRequestConflict: a concurrent write to the key.
    Conflict,
    Store(StoreError),
}

/// What a GET found.
enum Fetched {
    Missing,
    /// The store refused the range: the object may be empty.
    EmptyObject,
    Body(Vec<u8>),
}

impl From<StoreError> for PutFailure {
    fn from(e: StoreError) -> PutFailure {
        PutFailure::Store(e)
    }
}

impl S3Store {
    /// A store for `s3://bucket/prefix` from the standard AWS configuration.
    /// Nothing is sent yet: a missing bucket or refused credentials show at
    /// the first call.
    pub fn open(bucket: &str, prefix: &str, opts: TransferOptions) -> Result<S3Store, StoreError> {
        if bucket.is_empty() || bucket.contains('/') {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!("S3: `{bucket}` is not a bucket name"),
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("envelopefs-s3")
            .enable_all()
            .build()
            .map_err(|e| StoreError::new(StoreErrorKind::Other, format!("tokio runtime: {e}")))?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let attempts = max_attempts();
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .retry_config(RetryConfig::standard().with_max_attempts(attempts))
            .timeout_config(timeouts(0, attempts));
        let sdk = rt.block_on(loader.load());
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk);
        if sdk.region().is_none() {
            // S3-compatible stores mostly ignore it; AWS redirects to the
            // bucket's own region, which an error then names.
            conf = conf.region(Region::new("us-east-1"));
        }
        let mut checksums = true;
        if let Some(endpoint) = configured_endpoint(&sdk) {
            conf = conf.endpoint_url(endpoint.clone()).force_path_style(true);
            if !is_aws_endpoint(&endpoint) {
                checksums = false;
                conf = conf
                    .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                    .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
            }
        }
        let prefix = prefix.trim_matches('/');
        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(conf.build()),
            rt,
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            opts,
            attempts,
            checksums,
            bucket_seen: AtomicBool::new(false),
        })
    }

    /// The object key in the bucket.
    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// `s3://bucket/prefix/key`, for messages.
    fn what(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.bucket, self.prefix)
    }

    fn bounds(&self, bytes: u64) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::config::Builder::default().timeout_config(timeouts(bytes, self.attempts))
    }

    fn seen<T>(&self, r: T) -> T {
        self.bucket_seen.store(true, Ordering::Relaxed);
        r
    }

    /// A head's 404 does not say whether the key or the bucket is missing:
    /// until a call has found the bucket, ask a listing.
    fn check_bucket(&self, op: &str, key: &str) -> Result<(), StoreError> {
        if self.bucket_seen.load(Ordering::Relaxed) {
            return Ok(());
        }
        let req = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .max_keys(1);
        self.rt
            .block_on(req.send())
            .map_err(|e| sdk_error(op, &self.what(key), &e))?;
        self.seen(Ok(()))
    }

    fn put_single(&self, key: &str, body: &[u8], mode: PutMode) -> Result<(), PutFailure> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .content_length(body.len() as i64)
            .body(ByteStream::from(body.to_vec()));
        if mode == PutMode::IfAbsent {
            req = req.if_none_match("*");
        }
        let sent = req
            .customize()
            .config_override(self.bounds(body.len() as u64))
            .send();
        match self.rt.block_on(sent) {
            Ok(_) => self.seen(Ok(())),
            Err(e) => Err(self.put_failure("PutObject", key, mode, &e)),
        }
    }

    fn put_failure<E>(
        &self,
        op: &str,
        key: &str,
        mode: PutMode,
        e: &SdkError<E, HttpResponse>,
    ) -> PutFailure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let conditional = mode == PutMode::IfAbsent;
        match (status(e), e.code()) {
            (Some(412), _) | (_, Some("PreconditionFailed")) if conditional => PutFailure::Exists,
            (Some(409), Some("ConditionalRequestConflict")) if conditional => PutFailure::Conflict,
            _ => PutFailure::Store(sdk_error(op, &self.what(key), e)),
        }
    }

    fn put_multipart(&self, key: &str, body: &[u8], mode: PutMode) -> Result<(), PutFailure> {
        let full = self.full(key);
        let mut create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full);
        if self.checksums {
            create = create.checksum_algorithm(ChecksumAlgorithm::Crc32);
        }
        let created = self
            .rt
            .block_on(create.send())
            .map_err(|e| sdk_error("CreateMultipartUpload", &self.what(key), &e))?;
        let Some(upload_id) = created.upload_id().map(str::to_owned) else {
            return Err(PutFailure::Store(StoreError::new(
                StoreErrorKind::Other,
                format!(
                    "S3 CreateMultipartUpload {}: no upload id in the answer",
                    self.what(key)
                ),
            )));
        };
        let done = self
            .upload_parts(key, &upload_id, body)
            .map_err(PutFailure::Store)
            .and_then(|parts| self.complete(key, &upload_id, parts, body.len() as u64, mode));
        if done.is_err() {
            // Best effort: parts left behind cost storage until a lifecycle
            // rule removes them, nothing else.
            let abort = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload_id)
                .customize()
                .config_override(self.bounds(0))
                .send();
            let _ = self.rt.block_on(abort);
        }
        done
    }

    /// The parts of `body`, at most `jobs` in flight.
    fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        body: &[u8],
    ) -> Result<Vec<CompletedPart>, StoreError> {
        let part = part_len(body.len() as u64, self.opts.part_size) as usize;
        let pieces: Vec<&[u8]> = body.chunks(part).collect();
        let jobs = self.opts.jobs.max(1);
        self.rt.block_on(async {
            let mut running = tokio::task::JoinSet::new();
            let mut parts = Vec::with_capacity(pieces.len());
            let mut next = 0;
            while next < pieces.len() || !running.is_empty() {
                while next < pieces.len() && running.len() < jobs {
                    running.spawn(self.upload_part(key, upload_id, next as i32 + 1, pieces[next]));
                    next += 1;
                }
                match running.join_next().await {
                    Some(Ok(Ok(p))) => parts.push(p),
                    Some(Ok(Err(e))) => return Err(e),
                    Some(Err(e)) => {
                        return Err(StoreError::new(
                            StoreErrorKind::Other,
                            format!("S3 UploadPart {}: {e}", self.what(key)),
                        ))
                    }
                    None => break,
                }
            }
            parts.sort_by_key(|p: &CompletedPart| p.part_number());
            Ok(parts)
        })
    }

    /// One part's upload, as a task of its own.
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        data: &[u8],
    ) -> impl std::future::Future<Output = Result<CompletedPart, StoreError>> + Send + 'static {
        let what = format!("{} (part {number})", self.what(key));
        let sent = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(self.full(key))
            .upload_id(upload_id)
            .part_number(number)
            .content_length(data.len() as i64)
            .body(ByteStream::from(data.to_vec()))
            .customize()
            .config_override(self.bounds(data.len() as u64))
            .send();
        async move {
            let out = sent.await.map_err(|e| sdk_error("UploadPart", &what, &e))?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .set_checksum_crc32(out.checksum_crc32().map(str::to_owned))
                .build())
        }
    }

    fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
        len: u64,
        mode: PutMode,
    ) -> Result<(), PutFailure> {
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(self.full(key))
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if mode == PutMode::IfAbsent {
            req = req.if_none_match("*");
        }
        // Assembling a large object takes the store a while.
        let sent = req
            .customize()
            .config_override(self.bounds(16 * MIN_RATE * 60))
            .send();
        match self.rt.block_on(sent) {
            Ok(_) => Ok(()),
            // Completed, but the answer does not read as S3's (moto names
            // its root otherwise): the object says whether it is there.
            Err(e) if status(&e) == Some(200) && e.code().is_none() => match self.head(key)? {
                Some(o) if o.size == len => Ok(()),
                _ => Err(PutFailure::Store(sdk_error(
                    "CompleteMultipartUpload",
                    &self.what(key),
                    &e,
                ))),
            },
            Err(e) => Err(self.put_failure("CompleteMultipartUpload", key, mode, &e)),
        }
    }

    /// A GET of at most `max_len + 1` bytes: one more than allowed is refused.
    fn fetch(&self, key: &str, max_len: u64) -> Result<Fetched, StoreError> {
        let sent = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .range(format!("bytes=0-{max_len}"))
            .customize()
            .config_override(self.bounds(max_len))
            .send();
        self.rt.block_on(async {
            let out = match sent.await {
                Ok(out) => self.seen(out),
                Err(e) if e.code() == Some("NoSuchKey") => return Ok(Fetched::Missing),
                Err(e) if status(&e) == Some(404) && e.code().is_none() => {
                    return Ok(Fetched::Missing)
                }
                // S3 answers a range of an empty object so.
                Err(e) if status(&e) == Some(416) || e.code() == Some("InvalidRange") => {
                    return Ok(Fetched::EmptyObject)
                }
                Err(e) => return Err(sdk_error("GetObject", &self.what(key), &e)),
            };
            let total = out
                .content_range()
                .and_then(range_total)
                .or(out.content_length().map(|n| n.max(0) as u64));
            if let Some(t) = total.filter(|t| *t > max_len) {
                return Err(self.too_large(key, t, max_len));
            }
            let mut body = out.body;
            let mut data = Vec::new();
            while let Some(piece) = body.try_next().await.map_err(|e| {
                StoreError::new(
                    StoreErrorKind::Unavailable,
                    format!(
                        "S3 GetObject {}: {}",
                        self.what(key),
                        one_line(&e.to_string())
                    ),
                )
            })? {
                let n = (data.len() + piece.len()) as u64;
                if n > max_len {
                    return Err(self.too_large(key, n, max_len));
                }
                data.extend_from_slice(&piece);
            }
            Ok(Fetched::Body(data))
        })
    }

    fn get_empty(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.head(key)? {
            None => Ok(None),
            Some(i) if i.size == 0 => Ok(Some(Vec::new())),
            Some(i) => Err(StoreError::new(
                StoreErrorKind::Other,
                format!(
                    "S3 GetObject {}: the store refused the range of a {}-byte object",
                    self.what(key),
                    i.size
                ),
            )),
        }
    }

    fn too_large(&self, key: &str, size: u64, max_len: u64) -> StoreError {
        StoreError::new(
            StoreErrorKind::Other,
            format!(
                "S3 GetObject {}: the object is {size} bytes, more than the {max_len} expected",
                self.what(key)
            ),
        )
    }
}

impl ObjectStore for S3Store {
    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
            .trim_end_matches('/')
            .to_owned()
    }

    fn put(&self, key: &str, body: &[u8], mode: PutMode) -> Result<PutOutcome, StoreError> {
        let multipart = body.len() as u64 > self.opts.part_size;
        if multipart && mode == PutMode::IfAbsent && self.head(key)?.is_some() {
            // Not sending what is there already; the condition on the
            // completion still decides a race.
            return Ok(PutOutcome::AlreadyExists);
        }
        for _ in 0..CONFLICT_TRIES {
            let r = if multipart {
                self.put_multipart(key, body, mode)
            } else {
                self.put_single(key, body, mode)
            };
            match r {
                Ok(()) => return Ok(PutOutcome::Written),
                Err(PutFailure::Exists) => return Ok(PutOutcome::AlreadyExists),
                Err(PutFailure::Store(e)) => return Err(e),
                Err(PutFailure::Conflict) => {
                    if self.head(key)?.is_some() {
                        return Ok(PutOutcome::AlreadyExists);
                    }
                }
            }
        }
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            format!(
                "S3 PutObject {}: concurrent writes conflicted {CONFLICT_TRIES} times",
                self.what(key)
            ),
        ))
    }

    fn get(&self, key: &str, max_len: u64) -> Result<Option<Vec<u8>>, StoreError> {
        match self.fetch(key, max_len)? {
            Fetched::Missing => Ok(None),
            Fetched::EmptyObject => self.get_empty(key),
            Fetched::Body(data) => Ok(Some(data)),
        }
    }

    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let sent = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send();
        match self.rt.block_on(sent) {
            Ok(out) => self.seen(Ok(Some(ObjectInfo {
                key: key.to_owned(),
                size: out.content_length().unwrap_or(0).max(0) as u64,
                modified_unix: out.last_modified().map_or(0, DateTime::secs),
            }))),
            Err(e) if status(&e) == Some(404) => {
                self.check_bucket("HeadObject", key)?;
                Ok(None)
            }
            Err(e) => Err(sdk_error("HeadObject", &self.what(key), &e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let sent = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.full(prefix))
                .set_continuation_token(token.clone())
                .send();
            let page = self
                .rt
                .block_on(sent)
                .map_err(|e| sdk_error("ListObjectsV2", &self.what(prefix), &e))?;
            self.seen(());
            for o in page.contents() {
                let Some(k) = o.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                found.push(ObjectInfo {
                    key: k.to_owned(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                    modified_unix: o.last_modified().map_or(0, DateTime::secs),
                });
            }
            let next = page.next_continuation_token().map(str::to_owned);
            if page.is_truncated() != Some(true) {
                break;
            }
            if next.is_none() || next == token {
                return Err(StoreError::new(
                    StoreErrorKind::Other,
                    format!(
                        "S3 ListObjectsV2 {}: a truncated page without a new continuation token",
                        self.what(prefix)
                    ),
                ));
            }
            token = next;
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        let sent = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send();
        match self.rt.block_on(sent) {
            Ok(_) => self.seen(Ok(())),
            Err(e) if e.code() == Some("NoSuchKey") => Ok(()),
            Err(e) => Err(sdk_error("DeleteObject", &self.what(key), &e)),
        }
    }

    fn now_unix(&self) -> Result<i64, StoreError> {
        let probe = DateProbe::default();
        let sent = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .max_keys(1)
            .customize()
            .interceptor(probe.clone())
            .send();
        self.rt
            .block_on(sent)
            .map_err(|e| sdk_error("ListObjectsV2", &self.what(""), &e))?;
        let date = probe.0.lock().clone();
        date.and_then(|d| DateTime::from_str(&d, Format::HttpDate).ok())
            .map(|t| t.secs())
            .ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Other,
                    format!("S3 ListObjectsV2 {}: no Date in the answer", self.what("")),
                )
            })
    }
}
