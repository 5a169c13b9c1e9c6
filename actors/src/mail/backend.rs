//! Where rendered emails go: Amazon SES v2, or `.eml` files for development.
//! Each send answers with the provider's id for the message, or an error
//! that says whether trying again later may help.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sesv2::config::http::HttpResponse;
use aws_sdk_sesv2::error::{DisplayErrorContext, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message as SesMessage};
use tokio::sync::OnceCell;

use super::templates::RenderedEmail;

/// A send that took longer than this counts as a transient failure.
const SES_TIMEOUT: Duration = Duration::from_secs(30);
const SES_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the Mailer sends, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// SES v2 in `region`, at `endpoint` when set (a test double, a VPC endpoint).
    Ses {
        endpoint: Option<String>,
        region: String,
    },
    /// `.eml` files in this directory.
    File { dir: PathBuf },
}

/// Why a send failed, and whether it is worth trying again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Throttling, a paused account, a server error, a timeout, the network.
    #[error("{0}")]
    Transient(String),
    /// The provider refused this email: sending it again cannot help.
    #[error("{0}")]
    Permanent(String),
}

pub enum Backend {
    Ses(SesBackend),
    File(FileBackend),
}

impl Backend {
    pub fn new(config: &BackendConfig) -> Backend {
        match config {
            BackendConfig::Ses { endpoint, region } => {
                Backend::Ses(SesBackend::new(endpoint.clone(), region.clone()))
            }
            BackendConfig::File { dir } => Backend::File(FileBackend { dir: dir.clone() }),
        }
    }

    /// Sends one email; the provider's id for it.
    pub async fn send(
        &self,
        from: &str,
        to: &str,
        outbox_id: i64,
        email: &RenderedEmail,
    ) -> Result<String, SendError> {
        match self {
            Backend::Ses(ses) => ses.send(from, to, email).await,
            Backend::File(file) => file.write(from, to, outbox_id, email).await,
        }
    }
}

/// SES v2 `SendEmail` with simple content. The SDK's own retries are off:
/// the outbox retries, with a backoff that outlives a restart.
pub struct SesBackend {
    endpoint: Option<String>,
    region: String,
    /// Loading the SDK's configuration is async, so it happens at the first send.
    client: OnceCell<aws_sdk_sesv2::Client>,
}

impl SesBackend {
    pub fn new(endpoint: Option<String>, region: String) -> SesBackend {
        SesBackend {
            endpoint,
            region,
            client: OnceCell::new(),
        }
    }

    async fn client(&self) -> &aws_sdk_sesv2::Client {
        self.client
            .get_or_init(|| ses_client(self.endpoint.clone(), self.region.clone()))
            .await
    }

    pub async fn send(&self, from: &str, to: &str, email: &RenderedEmail) -> Result<String, SendError> {
        let content = |data: &str| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|e| SendError::Permanent(format!("cannot build the request: {e}")))
        };
        let message = SesMessage::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .text(content(&email.text)?)
                    .html(content(&email.html)?)
                    .build(),
            )
            .build();
        let output = self
            .client()
            .await
            .send_email()
            .from_email_address(from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(classify)?;
        output
            .message_id()
            .map(str::to_owned)
            .ok_or_else(|| SendError::Permanent("SES accepted the email but gave no MessageId".to_owned()))
    }
}

/// An SES client as the configuration asks, credentials found the SDK's
/// usual way, HTTPS through rustls with ring.
pub async fn ses_client(endpoint: Option<String>, region: String) -> aws_sdk_sesv2::Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(SES_CONNECT_TIMEOUT)
        .operation_timeout(SES_TIMEOUT)
        .build();
    let config = crate::aws::sdk_config(endpoint, region, RetryConfig::disabled(), timeouts).await;
    aws_sdk_sesv2::Client::new(&config)
}

/// Sorts SES's answer into worth retrying or not.
fn classify(error: SdkError<SendEmailError, HttpResponse>) -> SendError {
    let text = DisplayErrorContext(&error).to_string();
    match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            SendError::Transient(text)
        }
        SdkError::ServiceError(service) => match service.err() {
            SendEmailError::TooManyRequestsException(_)
            | SendEmailError::LimitExceededException(_)
            | SendEmailError::SendingPausedException(_) => SendError::Transient(text),
            SendEmailError::MessageRejected(_)
            | SendEmailError::BadRequestException(_)
            | SendEmailError::MailFromDomainNotVerifiedException(_)
            | SendEmailError::NotFoundException(_)
            | SendEmailError::AccountSuspendedException(_) => SendError::Permanent(text),
            _ => classify_status(service.raw().status().as_u16(), text),
        },
        _ => SendError::Permanent(text),
    }
}

/// An error SES did not name: throttling and server errors pass, other
/// refusals do not.
fn classify_status(status: u16, text: String) -> SendError {
    if status == 429 || status >= 500 {
        SendError::Transient(text)
    } else {
        SendError::Permanent(text)
    }
}

/// Development mail: one RFC 5322 file per email, multipart/alternative.
pub struct FileBackend {
    dir: PathBuf,
}

impl FileBackend {
    /// Writes the email to a temporary file and renames it into place, so
    /// that a reader never sees half an email; the file name is the id.
    pub async fn write(
        &self,
        from: &str,
        to: &str,
        outbox_id: i64,
        email: &RenderedEmail,
    ) -> Result<String, SendError> {
        let bytes =
            eml(from, to, email).map_err(|e| SendError::Permanent(format!("cannot build the email: {e}")))?;
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!("{}.{:09}-{outbox_id}.eml", stamp.as_secs(), stamp.subsec_nanos());
        let temporary = self.dir.join(format!(".{name}.tmp"));
        let io =
            |e: std::io::Error| SendError::Transient(format!("cannot write {}: {e}", self.dir.display()));
        tokio::fs::create_dir_all(&self.dir).await.map_err(io)?;
        tokio::fs::write(&temporary, bytes).await.map_err(io)?;
        tokio::fs::rename(&temporary, self.dir.join(&name))
            .await
            .map_err(io)?;
        Ok(name)
    }
}

/// The email as RFC 5322 bytes: text and HTML as alternatives.
pub fn eml(from: &str, to: &str, email: &RenderedEmail) -> std::io::Result<Vec<u8>> {
    let from = match parse_mailbox(from) {
        (Some(name), address) => mail_builder::headers::address::Address::from((name, address)),
        (None, address) => mail_builder::headers::address::Address::from(address),
    };
    mail_builder::MessageBuilder::new()
        .from(from)
        .to(to)
        .subject(email.subject.as_str())
        .text_body(email.text.as_str())
        .html_body(email.html.as_str())
        .write_to_vec()
}

/// `Name <address>` or a bare address, as `mail.from` holds it.
fn parse_mailbox(mailbox: &str) -> (Option<&str>, &str) {
    match mailbox.trim().strip_suffix('>').and_then(|m| m.rsplit_once('<')) {
        Some((name, address)) => {
            let name = name.trim().trim_matches('"').trim();
            ((!name.is_empty()).then_some(name), address.trim())
        }
        None => (None, mailbox.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_is_read_with_or_without_a_name() {
        assert_eq!(
            parse_mailbox("Lectern <hello@lectern.example>"),
            (Some("Lectern"), "hello@lectern.example")
        );
        assert_eq!(
            parse_mailbox("\"Lectern Team\" <hello@lectern.example>"),
            (Some("Lectern Team"), "hello@lectern.example")
        );
        assert_eq!(
            parse_mailbox("hello@lectern.example"),
            (None, "hello@lectern.example")
        );
    }

    #[test]
    fn unnamed_errors_retry_only_when_throttled_or_failing() {
        for (status, transient) in [(429, true), (500, true), (503, true), (400, false), (403, false)] {
            let outcome = classify_status(status, String::new());
            assert_eq!(matches!(outcome, SendError::Transient(_)), transient, "{status}");
        }
    }
}
