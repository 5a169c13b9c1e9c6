//! Backups in an S3-compatible bucket (AWS S3, MinIO, DigitalOcean Spaces,
//! Cloudflare R2 …), under `s3://bucket/prefix/key`.
//!
//! A dump is sent in parts of [`PART_BYTES`] as it is written (a multipart
//! upload begun with the first full part); the object takes its key only
//! when the upload is completed at [`Upload::commit`]. A dump smaller than
//! one part is a single PutObject at commit. An upload dropped before its
//! commit, or whose commit failed, is aborted, so no object is ever left
//! under a key unless its commit succeeded.
//!
//! The [`Storage`] trait is synchronous (dumps are written from a blocking
//! thread). The SDK's calls run on a runtime of the storage's own, on one
//! thread it owns, and the caller waits for their outcome: the storage can
//! be built and used anywhere, and nothing here depends on the caller's
//! runtime.

use std::fs;
use std::future::Future;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::{check_key, Fetched, Storage, Upload};
use crate::backup::{io_error, BackupError};

/// The size of each part of a multipart upload but the last (S3 needs at
/// least 5 MiB).
pub const PART_BYTES: usize = 8 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One attempt of one call: a part of 8 MiB at about 250 kB/s.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the bucket is, as configured (`backup.s3.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The service's address; None: AWS's own for the region.
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// Put before every key, without leading or trailing slashes ("" for none).
    pub prefix: String,
    /// `endpoint/bucket/key` rather than `bucket.endpoint/key` (MinIO, moto).
    pub path_style: bool,
}

/// An S3 client for `config`: credentials found the SDK's usual way
/// (AWS_ACCESS_KEY_ID …, a profile), HTTPS through rustls with ring, the
/// SDK's standard retries. Checksums are sent and checked only where S3
/// requires them (the dump's own SHA-256 is checked on every fetch), which
/// the S3-compatible services that lag behind AWS's newer checksums accept.
pub async fn client(config: &S3Config) -> aws_sdk_s3::Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .build();
    let shared = crate::aws::sdk_config(
        config.endpoint.clone(),
        config.region.clone(),
        RetryConfig::standard(),
        timeouts,
    )
    .await;
    let s3 = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(config.path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// Backups as objects in a bucket.
#[derive(Clone)]
pub struct S3Storage {
    inner: Arc<Inner>,
}

struct Inner {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    /// The endpoint for people to read.
    endpoint: String,
    /// Where fetched objects are copied to (readable by their owner only).
    spool: PathBuf,
    worker: Worker,
}

/// A single-threaded runtime on a thread of its own, which stops when this
/// is dropped.
struct Worker {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Worker {
    fn start() -> io::Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("lectern-s3".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                })
            })?;
        Ok(Worker { handle, _stop: stop })
    }

    /// Runs `work` on this runtime and waits for its outcome.
    fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, BackupError>> + Send + 'static,
    ) -> Result<T, BackupError> {
        let (sender, outcome) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = sender.send(work.await);
        });
        outcome
            .recv()
            .unwrap_or_else(|_| Err(BackupError::Storage("the S3 client's thread has stopped".into())))
    }
}

impl S3Storage {
    /// The storage `config` describes; fetched objects are copied under
    /// `spool`. Nothing is asked of the service yet.
    pub fn new(config: &S3Config, spool: PathBuf) -> Result<S3Storage, BackupError> {
        let worker =
            Worker::start().map_err(|e| BackupError::Storage(format!("cannot start the S3 client: {e}")))?;
        let for_client = config.clone();
        let client = worker.run(async move { Ok(client(&for_client).await) })?;
        Ok(S3Storage {
            inner: Arc::new(Inner {
                client,
                bucket: config.bucket.clone(),
                prefix: config.prefix.trim_matches('/').to_owned(),
                endpoint: match &config.endpoint {
                    Some(endpoint) => endpoint.clone(),
                    None => format!("AWS S3 in {}", config.region),
                },
                spool,
                worker,
            }),
        })
    }
}

impl Inner {
    /// The object's key in the bucket: the prefix, then the backup's key.
    fn object(&self, key: &str) -> Result<String, BackupError> {
        check_key(key)?;
        Ok(if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        })
    }

    fn location(&self, object: &str) -> String {
        format!("s3://{}/{object}", self.bucket)
    }

    /// What failed, in an operator's words first, then the SDK's own.
    fn failure<E>(&self, call: &str, object: &str, error: SdkError<E, HttpResponse>) -> BackupError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let detail = DisplayErrorContext(&error).to_string();
        let reason = match &error {
            SdkError::TimeoutError(_) => format!("{} did not answer in time", self.endpoint),
            SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
                format!("cannot reach {}", self.endpoint)
            }
            _ if detail.contains("credentials") && !matches!(error, SdkError::ServiceError(_)) => {
                "no usable AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
                 (or AWS_PROFILE) in Lectern's environment"
                    .to_owned()
            }
            SdkError::ServiceError(service) => match service.err().code() {
                Some("NoSuchBucket") => format!("the bucket {} does not exist", self.bucket),
                Some(
                    "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "ExpiredToken"
                    | "InvalidToken"
                    | "AllAccessDisabled",
                ) => format!(
                    "access denied: check the AWS credentials (AWS_ACCESS_KEY_ID …) and what they \
                     may do in the bucket {}",
                    self.bucket
                ),
                _ => format!(
                    "{} answered HTTP {}",
                    self.endpoint,
                    service.raw().status().as_u16()
                ),
            },
            _ => format!("no usable answer from {}", self.endpoint),
        };
        BackupError::Storage(format!(
            "S3 {call} of {} failed: {reason} ({detail})",
            self.location(object)
        ))
    }
}

impl Storage for S3Storage {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn location(&self, key: &str) -> String {
        let object = self.inner.object(key).unwrap_or_else(|_| key.to_owned());
        self.inner.location(&object)
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>, BackupError> {
        Ok(Box::new(S3Upload {
            object: self.inner.object(key)?,
            inner: self.inner.clone(),
            buffer: Vec::with_capacity(PART_BYTES),
            upload_id: None,
            parts: Vec::new(),
            committed: false,
        }))
    }

    fn fetch(&self, key: &str) -> Result<Fetched, BackupError> {
        let object = self.inner.object(key)?;
        let spool = &self.inner.spool;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(spool)
            .map_err(io_error(spool))?;
        let (file, path) = tempfile::Builder::new()
            .prefix(".fetched-")
            .suffix(".dump")
            .tempfile_in(spool)
            .map_err(io_error(spool))?
            .into_parts();
        let inner = self.inner.clone();
        let (key, written) = (key.to_owned(), path.to_path_buf());
        self.inner.worker.run(async move {
            let got = inner
                .client
                .get_object()
                .bucket(&inner.bucket)
                .key(&object)
                .send()
                .await;
            let mut body = match got {
                Ok(output) => output.body,
                Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => {
                    return Err(BackupError::Missing {
                        location: inner.location(&object),
                        key,
                    })
                }
                Err(e) => return Err(inner.failure("GetObject", &object, e)),
            };
            // The body goes to disk as it arrives, never whole in memory.
            let mut file = io::BufWriter::with_capacity(1 << 20, file);
            loop {
                match body.try_next().await {
                    Ok(Some(chunk)) => file.write_all(&chunk).map_err(io_error(&written))?,
                    Ok(None) => break,
                    Err(e) => {
                        return Err(BackupError::Storage(format!(
                            "S3 GetObject of {} failed while reading it: {}",
                            inner.location(&object),
                            DisplayErrorContext(&e)
                        )))
                    }
                }
            }
            file.flush().map_err(io_error(&written))
        })?;
        Ok(Fetched::temporary(path))
    }

    fn list(&self) -> Result<Vec<String>, BackupError> {
        let inner = self.inner.clone();
        self.inner.worker.run(async move {
            let prefix = match inner.prefix.as_str() {
                "" => String::new(),
                prefix => format!("{prefix}/"),
            };
            let mut keys = Vec::new();
            let mut pages = inner
                .client
                .list_objects_v2()
                .bucket(&inner.bucket)
                .prefix(&prefix)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| inner.failure("ListObjectsV2", &prefix, e))?;
                keys.extend(
                    page.contents()
                        .iter()
                        .filter_map(|object| object.key()?.strip_prefix(&prefix))
                        .map(str::to_owned),
                );
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn delete(&self, key: &str) -> Result<(), BackupError> {
        let object = self.inner.object(key)?;
        let inner = self.inner.clone();
        self.inner.worker.run(async move {
            // What a process killed half-way through an upload left open.
            let open = inner
                .client
                .list_multipart_uploads()
                .bucket(&inner.bucket)
                .prefix(&object)
                .send()
                .await
                .map_err(|e| inner.failure("ListMultipartUploads", &object, e))?;
            for upload in open.uploads() {
                if upload.key() != Some(object.as_str()) {
                    continue;
                }
                inner
                    .client
                    .abort_multipart_upload()
                    .bucket(&inner.bucket)
                    .key(&object)
                    .set_upload_id(upload.upload_id().map(str::to_owned))
                    .send()
                    .await
                    .map_err(|e| inner.failure("AbortMultipartUpload", &object, e))?;
            }
            // S3 answers 204 for a key that is not there: not an error.
            match inner
                .client
                .delete_object()
                .bucket(&inner.bucket)
                .key(&object)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => Err(inner.failure("DeleteObject", &object, e)),
            }
        })
    }
}

/// A dump on its way to the bucket.
struct S3Upload {
    inner: Arc<Inner>,
    object: String,
    /// What is not sent yet: at most one part.
    buffer: Vec<u8>,
    /// The multipart upload, begun with the first full part.
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    committed: bool,
}

impl S3Upload {
    /// Runs `call` with the storage and this object's key on the storage's
    /// runtime, and waits for its outcome.
    fn run<T, F>(&self, call: impl FnOnce(Arc<Inner>, String) -> F) -> Result<T, BackupError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, BackupError>> + Send + 'static,
    {
        self.inner
            .worker
            .run(call(self.inner.clone(), self.object.clone()))
    }

    /// Begins the multipart upload: its id.
    fn begin(&self) -> Result<String, BackupError> {
        self.run(|inner, object| async move {
            let created = inner
                .client
                .create_multipart_upload()
                .bucket(&inner.bucket)
                .key(&object)
                .send()
                .await
                .map_err(|e| inner.failure("CreateMultipartUpload", &object, e))?;
            created.upload_id().map(str::to_owned).ok_or_else(|| {
                BackupError::Storage(format!(
                    "S3 CreateMultipartUpload of {} gave no UploadId",
                    inner.location(&object)
                ))
            })
        })
    }

    /// Sends the buffer as the next part, beginning the multipart upload
    /// with the first.
    fn send_part(&mut self) -> Result<(), BackupError> {
        let id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self.begin()?;
                self.upload_id.insert(id).clone()
            }
        };
        let number = i32::try_from(self.parts.len() + 1).unwrap_or(i32::MAX);
        let body = std::mem::replace(&mut self.buffer, Vec::with_capacity(PART_BYTES));
        let part = self.run(|inner, object| async move {
            let sent = inner
                .client
                .upload_part()
                .bucket(&inner.bucket)
                .key(&object)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| inner.failure(&format!("UploadPart {number}"), &object, e))?;
            Ok(CompletedPart::builder()
                .set_e_tag(sent.e_tag().map(str::to_owned))
                .part_number(number)
                .build())
        })?;
        self.parts.push(part);
        Ok(())
    }
}

impl Write for S3Upload {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if bytes.is_empty() {
            return Ok(0);
        }
        // A full buffer is sent only once more follows: the last part may
        // be small, the others not, and a dump of one part is one PutObject.
        if self.buffer.len() >= PART_BYTES {
            self.send_part().map_err(io::Error::other)?;
        }
        let taken = bytes.len().min(PART_BYTES - self.buffer.len());
        self.buffer.extend_from_slice(&bytes[..taken]);
        Ok(taken)
    }

    /// Nothing: parts go when full, the last at commit.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Upload for S3Upload {
    fn commit(mut self: Box<Self>) -> Result<(), BackupError> {
        if self.upload_id.is_some() && !self.buffer.is_empty() {
            self.send_part()?;
        }
        match self.upload_id.clone() {
            None => {
                let body = std::mem::take(&mut self.buffer);
                self.run(|inner, object| async move {
                    inner
                        .client
                        .put_object()
                        .bucket(&inner.bucket)
                        .key(&object)
                        .body(ByteStream::from(body))
                        .send()
                        .await
                        .map_err(|e| inner.failure("PutObject", &object, e))
                })?;
            }
            Some(id) => {
                let parts = CompletedMultipartUpload::builder()
                    .set_parts(Some(self.parts.clone()))
                    .build();
                self.run(|inner, object| async move {
                    inner
                        .client
                        .complete_multipart_upload()
                        .bucket(&inner.bucket)
                        .key(&object)
                        .upload_id(id)
                        .multipart_upload(parts)
                        .send()
                        .await
                        .map_err(|e| inner.failure("CompleteMultipartUpload", &object, e))
                })?;
            }
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for S3Upload {
    /// An upload that was not committed is aborted: S3 drops its parts and
    /// the key is never created. Should the abort fail too, the parts stay
    /// invisible (no object) until a bucket lifecycle rule removes them.
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if let Some(id) = self.upload_id.take() {
            let _ = self.run(|inner, object| async move {
                inner
                    .client
                    .abort_multipart_upload()
                    .bucket(&inner.bucket)
                    .key(&object)
                    .upload_id(id)
                    .send()
                    .await
                    .map_err(|e| inner.failure("AbortMultipartUpload", &object, e))
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(prefix: &str) -> S3Storage {
        S3Storage::new(
            &S3Config {
                endpoint: Some("http://127.0.0.1:9".into()),
                bucket: "backups".into(),
                region: "us-east-1".into(),
                prefix: prefix.into(),
                path_style: true,
            },
            std::env::temp_dir(),
        )
        .expect("storage")
    }

    #[test]
    fn keys_go_under_the_prefix_in_the_bucket() {
        assert_eq!(storage("").location("daily/a.dump"), "s3://backups/daily/a.dump");
        assert_eq!(
            storage("/site/one/").location("daily/a.dump"),
            "s3://backups/site/one/daily/a.dump"
        );
        assert_eq!(storage("x").name(), "s3");
    }

    #[test]
    fn keys_that_are_not_plain_paths_are_refused() {
        let storage = storage("");
        for key in ["", "../a.dump", "/a.dump"] {
            assert!(storage.create(key).is_err(), "{key}");
            assert!(storage.fetch(key).is_err(), "{key}");
        }
    }
}
