//! Amazon SNS messages that carry Amazon SES bounce and complaint
//! notifications: parsed into a typed value, their signature checked against
//! the certificate SNS names (fetched only from SNS's own hosts), their topic
//! and age checked, and then acted on: a permanent bounce or a complaint puts
//! the address on the suppression list; a subscription is confirmed.
//!
//! AWS documents the format and the verification in "Verifying the
//! signatures of Amazon SNS messages".

use std::error::Error as _;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use deadpool_postgres::{Pool, PoolError};
use reqwest::Url;
use ring::signature::{
    UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256,
};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use x509_cert::der::DecodePem as _;
use x509_cert::spki::ObjectIdentifier;
use x509_cert::Certificate;

use super::suppression::{self, Reason};
use super::{EmailAddress, MailError};

/// Signing certificates kept in memory, by URL (SNS rotates them rarely).
const CERTIFICATE_CACHE: usize = 16;
/// A signing certificate is about 2 KB and a confirmation's answer less;
/// anything much larger is neither.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The algorithm of an RSA key in a certificate (RFC 8017, `rsaEncryption`).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// What the SNS checks need to know (`[mail.sns]` in the configuration).
#[derive(Debug, Clone)]
pub struct SnsConfig {
    /// Topics whose messages are accepted; empty refuses every message.
    pub topic_arns: Vec<String>,
    /// URL prefixes trusted besides SNS's own hosts (a local server in tests).
    pub allowed_url_prefixes: Vec<String>,
    /// Messages signed longer ago than this (or as far ahead) are refused as replays.
    pub max_age: Duration,
}

/// The three kinds of message SNS posts to an HTTPS subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    Notification,
    SubscriptionConfirmation { subscribe_url: String, token: String },
    UnsubscribeConfirmation { subscribe_url: String, token: String },
}

impl MessageKind {
    /// The `Type` field's value.
    pub fn name(&self) -> &'static str {
        match self {
            MessageKind::Notification => "Notification",
            MessageKind::SubscriptionConfirmation { .. } => "SubscriptionConfirmation",
            MessageKind::UnsubscribeConfirmation { .. } => "UnsubscribeConfirmation",
        }
    }
}

/// `SignatureVersion` 1 is SHA1withRSA, 2 is SHA256withRSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureVersion {
    Sha1,
    Sha256,
}

/// An SNS message as posted to an HTTP endpoint, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnsMessage {
    pub kind: MessageKind,
    pub message_id: String,
    pub topic_arn: String,
    pub subject: Option<String>,
    pub message: String,
    /// As sent: it is part of what is signed.
    pub timestamp: String,
    pub sent_at: OffsetDateTime,
    pub signature_version: SignatureVersion,
    pub signature: Vec<u8>,
    pub signing_cert_url: String,
}

/// A body that is not an SNS message; the text says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(String);

impl SnsMessage {
    pub fn parse(body: &[u8]) -> Result<SnsMessage, Malformed> {
        let fields = match serde_json::from_slice(body) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return Err(Malformed("the body is not a JSON object".into())),
            Err(_) => return Err(Malformed("the body is not JSON".into())),
        };
        let kind = match text(&fields, "Type")?.as_str() {
            "Notification" => MessageKind::Notification,
            "SubscriptionConfirmation" => MessageKind::SubscriptionConfirmation {
                subscribe_url: text(&fields, "SubscribeURL")?,
                token: text(&fields, "Token")?,
            },
            "UnsubscribeConfirmation" => MessageKind::UnsubscribeConfirmation {
                subscribe_url: text(&fields, "SubscribeURL")?,
                token: text(&fields, "Token")?,
            },
            _ => return Err(Malformed("Type is not an SNS message type".into())),
        };
        let timestamp = text(&fields, "Timestamp")?;
        let sent_at = OffsetDateTime::parse(&timestamp, &Rfc3339)
            .map_err(|_| Malformed("Timestamp must be an ISO 8601 time".into()))?;
        let signature_version = match text(&fields, "SignatureVersion")?.as_str() {
            "1" => SignatureVersion::Sha1,
            "2" => SignatureVersion::Sha256,
            _ => return Err(Malformed("SignatureVersion must be 1 or 2".into())),
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(text(&fields, "Signature")?)
            .map_err(|_| Malformed("Signature must be base64".into()))?;
        let subject = match fields.get("Subject") {
            None | Some(Value::Null) => None,
            Some(Value::String(subject)) => Some(subject.clone()),
            Some(_) => return Err(Malformed("Subject must be a string".into())),
        };
        Ok(SnsMessage {
            kind,
            message_id: text(&fields, "MessageId")?,
            topic_arn: text(&fields, "TopicArn")?,
            subject,
            message: text(&fields, "Message")?,
            timestamp,
            sent_at,
            signature_version,
            signature,
            signing_cert_url: text(&fields, "SigningCertURL")?,
        })
    }

    /// The bytes SNS signs: `name\nvalue\n` for each signed field, in the
    /// order AWS documents (a notification's `Subject` only when it has one).
    pub fn string_to_sign(&self) -> String {
        let mut pairs = vec![("Message", &self.message), ("MessageId", &self.message_id)];
        let confirmation = match &self.kind {
            MessageKind::Notification => None,
            MessageKind::SubscriptionConfirmation { subscribe_url, token }
            | MessageKind::UnsubscribeConfirmation { subscribe_url, token } => Some((subscribe_url, token)),
        };
        if let Some(subject) = self.subject.as_ref().filter(|_| confirmation.is_none()) {
            pairs.push(("Subject", subject));
        }
        if let Some((subscribe_url, _)) = confirmation {
            pairs.push(("SubscribeURL", subscribe_url));
        }
        pairs.push(("Timestamp", &self.timestamp));
        if let Some((_, token)) = confirmation {
            pairs.push(("Token", token));
        }
        pairs.push(("TopicArn", &self.topic_arn));
        let kind = self.kind.name().to_owned();
        pairs.push(("Type", &kind));
        pairs
            .into_iter()
            .map(|(name, value)| format!("{name}\n{value}\n"))
            .collect()
    }
}

fn text(fields: &Map<String, Value>, name: &str) -> Result<String, Malformed> {
    match fields.get(name) {
        Some(Value::String(value)) => Ok(value.clone()),
        None | Some(Value::Null) => Err(Malformed(format!("{name} is missing"))),
        Some(_) => Err(Malformed(format!("{name} must be a string"))),
    }
}

/// Why a well-formed message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("mail.sns.topic_arns is empty, so every SNS message is refused: add the ARN of the topic SES publishes to")]
    NoTopicAllowed,
    #[error("topic {0} is not in mail.sns.topic_arns")]
    TopicNotAllowed(String),
    #[error(
        "{0} is not an SNS URL (https://sns.<region>.amazonaws.com/…) nor in mail.sns.allowed_url_prefixes"
    )]
    UrlNotAllowed(String),
    #[error("signed at {0}, further from now than mail.sns.max_age_secs allows")]
    Stale(String),
    #[error("the signing certificate is unusable: {0}")]
    BadCertificate(String),
    #[error("the signature does not match the message")]
    BadSignature,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for SNS: {0}")]
pub struct HttpClientError(#[from] reqwest::Error);

#[derive(Debug, thiserror::Error)]
pub enum SnsError {
    #[error("refused SNS message: {0}")]
    Rejected(#[from] Rejection),
    /// SNS or the network failed us; SNS retries later.
    #[error("{0}")]
    Unavailable(String),
    #[error("cannot get a database connection: {0}")]
    Pool(#[from] PoolError),
    #[error(transparent)]
    Mail(#[from] MailError),
}

/// What a verified message led to, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Addresses put on (or kept on) the suppression list, and the ones in
    /// the notification that are not addresses.
    Suppressed {
        reason: Reason,
        addresses: Vec<EmailAddress>,
        unparseable: Vec<String>,
    },
    /// A notification with nothing to do, and why.
    Ignored(String),
    SubscriptionConfirmed,
    Unsubscribed,
}

/// Checks SNS messages and acts on them; holds the HTTP client and the
/// cache of signing keys.
pub struct SnsReceiver {
    config: SnsConfig,
    http: reqwest::Client,
    /// Each certificate's RSA public key, DER `RSAPublicKey` as ring takes it.
    keys: quick_cache::sync::Cache<String, Arc<[u8]>>,
}

impl fmt::Debug for SnsReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnsReceiver")
            .field("config", &self.config)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlUse {
    SigningCertificate,
    SubscribeUrl,
}

impl SnsReceiver {
    pub fn new(config: SnsConfig) -> Result<SnsReceiver, HttpClientError> {
        let http = reqwest::Client::builder()
            // A redirect could lead off SNS's hosts.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .build()?;
        Ok(SnsReceiver {
            config,
            http,
            keys: quick_cache::sync::Cache::new(CERTIFICATE_CACHE),
        })
    }

    /// Verifies one parsed message and acts on it.
    pub async fn receive(&self, pool: &Pool, message: &SnsMessage) -> Result<Action, SnsError> {
        self.verify(message).await?;
        Ok(match &message.kind {
            MessageKind::Notification => apply_ses_notification(pool, &message.message).await?,
            MessageKind::SubscriptionConfirmation { subscribe_url, .. } => {
                self.confirm_subscription(subscribe_url).await?;
                Action::SubscriptionConfirmed
            }
            MessageKind::UnsubscribeConfirmation { .. } => Action::Unsubscribed,
        })
    }

    /// Topic, age, certificate URL, then signature: the cheap checks come
    /// first, and nothing is fetched for a message from a foreign topic.
    async fn verify(&self, message: &SnsMessage) -> Result<(), SnsError> {
        if self.config.topic_arns.is_empty() {
            return Err(Rejection::NoTopicAllowed.into());
        }
        if !self.config.topic_arns.contains(&message.topic_arn) {
            return Err(Rejection::TopicNotAllowed(message.topic_arn.clone()).into());
        }
        let age = (OffsetDateTime::now_utc() - message.sent_at).unsigned_abs();
        if age > self.config.max_age {
            return Err(Rejection::Stale(message.timestamp.clone()).into());
        }
        let url = self.allowed_url(&message.signing_cert_url, UrlUse::SigningCertificate)?;
        let key = self.signing_key(url).await?;
        // SNS still signs with SHA-1 for SignatureVersion 1, the default.
        let algorithm = match message.signature_version {
            SignatureVersion::Sha1 => &RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            SignatureVersion::Sha256 => &RSA_PKCS1_2048_8192_SHA256,
        };
        UnparsedPublicKey::new(algorithm, &*key)
            .verify(message.string_to_sign().as_bytes(), &message.signature)
            .map_err(|_| Rejection::BadSignature.into())
    }

    /// Visits the `SubscribeURL`, which is how SNS wants a subscription confirmed.
    async fn confirm_subscription(&self, subscribe_url: &str) -> Result<(), SnsError> {
        let url = self.allowed_url(subscribe_url, UrlUse::SubscribeUrl)?;
        self.fetch(url)
            .await
            .map_err(|e| SnsError::Unavailable(format!("cannot confirm the subscription: {e}")))?;
        Ok(())
    }

    async fn signing_key(&self, url: Url) -> Result<Arc<[u8]>, SnsError> {
        if let Some(key) = self.keys.get(url.as_str()) {
            return Ok(key);
        }
        let pem = self
            .fetch(url.clone())
            .await
            .map_err(|e| SnsError::Unavailable(format!("cannot fetch the signing certificate: {e}")))?;
        let key: Arc<[u8]> = public_key_of(&pem).map_err(Rejection::BadCertificate)?.into();
        self.keys.insert(url.as_str().to_owned(), Arc::clone(&key));
        Ok(key)
    }

    /// GETs `url`; its body, at most `MAX_RESPONSE_BYTES`.
    async fn fetch(&self, url: Url) -> Result<Vec<u8>, String> {
        let shown = url.to_string();
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{shown}: {}", with_causes(&e)))?;
        if !response.status().is_success() {
            return Err(format!("{shown} answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("{shown}: {}", with_causes(&e)))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_RESPONSE_BYTES {
                return Err(format!("{shown} sent more than {MAX_RESPONSE_BYTES} bytes"));
            }
        }
        Ok(body)
    }

    /// SNS's own hosts over HTTPS (`sns.<region>.amazonaws.com[.cn]`, and a
    /// `.pem` path for certificates), or a configured prefix.
    fn allowed_url(&self, raw: &str, purpose: UrlUse) -> Result<Url, Rejection> {
        let refused = || Rejection::UrlNotAllowed(raw.to_owned());
        let url = Url::parse(raw).map_err(|_| refused())?;
        if self
            .config
            .allowed_url_prefixes
            .iter()
            .any(|prefix| url.as_str().starts_with(prefix.as_str()))
        {
            return Ok(url);
        }
        let on_sns = url.scheme() == "https"
            && url.username().is_empty()
            && url.password().is_none()
            && url.port().is_none()
            && url.host_str().is_some_and(is_sns_host);
        let path_ok = purpose == UrlUse::SubscribeUrl || url.path().ends_with(".pem");
        if on_sns && path_ok {
            Ok(url)
        } else {
            Err(refused())
        }
    }
}

fn is_sns_host(host: &str) -> bool {
    let region = host.strip_prefix("sns.").and_then(|rest| {
        rest.strip_suffix(".amazonaws.com")
            .or_else(|| rest.strip_suffix(".amazonaws.com.cn"))
    });
    region.is_some_and(|region| {
        !region.is_empty()
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    })
}

/// The certificate's RSA public key as DER `RSAPublicKey`, the bit string
/// of its SubjectPublicKeyInfo. ring parses it only when verifying, so a
/// malformed key shows as a bad signature.
fn public_key_of(pem: &[u8]) -> Result<Vec<u8>, String> {
    let certificate = Certificate::from_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))?;
    let info = certificate.tbs_certificate.subject_public_key_info;
    if info.algorithm.oid != RSA_ENCRYPTION {
        return Err(format!("its key is not RSA but {}", info.algorithm.oid));
    }
    info.subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "its RSA key is not a whole number of bytes".to_owned())
}

fn with_causes(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One address an SES notification asks to suppress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SesSuppression {
    pub address: EmailAddress,
    pub detail: String,
}

/// What an SES notification (the `Message` of an SNS notification) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SesNotification {
    Suppress {
        reason: Reason,
        suppressions: Vec<SesSuppression>,
        unparseable: Vec<String>,
    },
    /// Deliveries, transient bounces, anything else: nothing to do, and why.
    Ignore(String),
}

impl SesNotification {
    /// Reads an SES notification (`notificationType`) or event
    /// (`eventType`): permanent bounces and complaints suppress their
    /// recipients; nothing else does.
    pub fn interpret(message: &str) -> SesNotification {
        let Ok(event) = serde_json::from_str::<Value>(message) else {
            return SesNotification::Ignore("the message is not an SES notification (not JSON)".into());
        };
        let kind = event
            .get("notificationType")
            .or_else(|| event.get("eventType"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let field =
            |value: &Value, name: &str| value.get(name).and_then(Value::as_str).unwrap_or("").to_owned();
        match kind {
            "Bounce" => {
                let bounce = &event["bounce"];
                let bounce_type = field(bounce, "bounceType");
                if bounce_type != "Permanent" {
                    return SesNotification::Ignore(format!("bounceType {bounce_type:?} is not suppressed"));
                }
                let sub_type = field(bounce, "bounceSubType");
                recipients(
                    bounce,
                    "bouncedRecipients",
                    Reason::Bounce,
                    |recipient| match field(recipient, "diagnosticCode") {
                        code if code.is_empty() => format!("Permanent/{sub_type}"),
                        code => format!("Permanent/{sub_type}: {code}"),
                    },
                )
            }
            "Complaint" => {
                let complaint = &event["complaint"];
                let feedback = match field(complaint, "complaintFeedbackType") {
                    feedback if feedback.is_empty() => "complaint".to_owned(),
                    feedback => feedback,
                };
                recipients(complaint, "complainedRecipients", Reason::Complaint, |_| {
                    feedback.clone()
                })
            }
            "" => SesNotification::Ignore("the message has no notificationType".into()),
            other => SesNotification::Ignore(format!("a {other} notification needs nothing")),
        }
    }
}

fn recipients(
    object: &Value,
    list: &str,
    reason: Reason,
    detail: impl Fn(&Value) -> String,
) -> SesNotification {
    let mut suppressions = Vec::new();
    let mut unparseable = Vec::new();
    for recipient in object[list].as_array().map(Vec::as_slice).unwrap_or_default() {
        let raw = recipient.get("emailAddress").and_then(Value::as_str);
        match raw.map(EmailAddress::parse) {
            Some(Ok(address)) => suppressions.push(SesSuppression {
                address,
                detail: detail(recipient),
            }),
            _ => unparseable.push(raw.map_or_else(|| recipient.to_string(), str::to_owned)),
        }
    }
    SesNotification::Suppress {
        reason,
        suppressions,
        unparseable,
    }
}

async fn apply_ses_notification(pool: &Pool, message: &str) -> Result<Action, SnsError> {
    match SesNotification::interpret(message) {
        SesNotification::Ignore(why) => Ok(Action::Ignored(why)),
        SesNotification::Suppress {
            reason,
            suppressions,
            unparseable,
        } => {
            let client = pool.get().await?;
            let mut addresses = Vec::with_capacity(suppressions.len());
            for suppression in suppressions {
                suppression::suppress(&client, &suppression.address, reason, &suppression.detail).await?;
                addresses.push(suppression.address);
            }
            Ok(Action::Suppressed {
                reason,
                addresses,
                unparseable,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use serde_json::json;

    fn receiver(prefixes: &[&str]) -> SnsReceiver {
        SnsReceiver::new(SnsConfig {
            topic_arns: vec!["arn:aws:sns:us-east-1:123456789012:ses".into()],
            allowed_url_prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            max_age: Duration::from_secs(3600),
        })
        .unwrap()
    }

    fn notification() -> Value {
        json!({
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
            "Subject": "My First Message",
            "Message": "Hello world!",
            "Timestamp": "2012-05-02T00:54:06.655Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLEw6JRN",
            "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
            "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe"
        })
    }

    fn confirmation() -> Value {
        json!({
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37",
            "TopicArn": "arn:aws:sns:us-west-2:123456789012:MyTopic",
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37",
            "Timestamp": "2012-04-26T20:45:04.751Z",
            "SignatureVersion": "2",
            "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
            "SigningCertURL": "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
        })
    }

    fn parse(value: &Value) -> Result<SnsMessage, Malformed> {
        SnsMessage::parse(value.to_string().as_bytes())
    }

    #[test]
    fn a_notification_is_signed_over_its_fields_in_the_documented_order() {
        let message = parse(&notification()).unwrap();
        assert_eq!(message.kind, MessageKind::Notification);
        assert_eq!(message.signature_version, SignatureVersion::Sha1);
        assert_eq!(
            message.string_to_sign(),
            "Message\nHello world!\n\
             MessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n\
             Subject\nMy First Message\n\
             Timestamp\n2012-05-02T00:54:06.655Z\n\
             TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n\
             Type\nNotification\n"
        );
    }

    #[test]
    fn a_notification_without_subject_signs_no_subject() {
        let mut body = notification();
        body.as_object_mut().unwrap().remove("Subject");
        let signed = parse(&body).unwrap().string_to_sign();
        assert!(
            signed.starts_with("Message\nHello world!\nMessageId\n"),
            "{signed}"
        );
        assert!(!signed.contains("Subject"), "{signed}");
    }

    #[test]
    fn a_confirmation_signs_subscribe_url_and_token() {
        let message = parse(&confirmation()).unwrap();
        assert_eq!(message.signature_version, SignatureVersion::Sha256);
        assert_eq!(
            message.string_to_sign(),
            "Message\nYou have chosen to subscribe to the topic.\n\
             MessageId\n165545c9-2a5c-472c-8df2-7ff2be2b3b1b\n\
             SubscribeURL\nhttps://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37\n\
             Timestamp\n2012-04-26T20:45:04.751Z\n\
             Token\n2336412f37\n\
             TopicArn\narn:aws:sns:us-west-2:123456789012:MyTopic\n\
             Type\nSubscriptionConfirmation\n"
        );
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        let cases: [(&str, Value, &str); 6] = [
            ("MessageId", Value::Null, "MessageId is missing"),
            ("Message", json!(42), "Message must be a string"),
            ("Subject", json!(["a"]), "Subject must be a string"),
            ("Type", json!("Gossip"), "Type is not an SNS message type"),
            ("SignatureVersion", json!("3"), "SignatureVersion must be 1 or 2"),
            (
                "Timestamp",
                json!("yesterday"),
                "Timestamp must be an ISO 8601 time",
            ),
        ];
        for (field, value, expected) in cases {
            let mut body = notification();
            body[field] = value;
            assert_eq!(parse(&body), Err(Malformed(expected.into())), "{field}");
        }
        let mut body = notification();
        body["Signature"] = json!("not base64!");
        assert_eq!(parse(&body), Err(Malformed("Signature must be base64".into())));
        let mut body = confirmation();
        body.as_object_mut().unwrap().remove("Token");
        assert_eq!(parse(&body), Err(Malformed("Token is missing".into())));
        assert_eq!(
            SnsMessage::parse(b"[1, 2]"),
            Err(Malformed("the body is not a JSON object".into()))
        );
        assert_eq!(
            SnsMessage::parse(b"{\"Type\""),
            Err(Malformed("the body is not JSON".into()))
        );
    }

    #[test]
    fn certificates_come_only_from_sns_hosts_over_https_as_pem() {
        let sns = receiver(&[]);
        for good in [
            "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
            "https://SNS.eu-west-1.amazonaws.com:443/x.pem",
        ] {
            assert!(
                sns.allowed_url(good, UrlUse::SigningCertificate).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "http://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.txt",
            "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.amazonaws.com/x.pem",
            "https://s3.us-east-1.amazonaws.com/x.pem",
            "https://sns.us_east.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com:8443/x.pem",
            "https://user@sns.us-east-1.amazonaws.com/x.pem",
            "not a url",
        ] {
            assert_eq!(
                sns.allowed_url(bad, UrlUse::SigningCertificate),
                Err(Rejection::UrlNotAllowed(bad.into())),
                "{bad}"
            );
        }
        assert!(sns
            .allowed_url(
                "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=1",
                UrlUse::SubscribeUrl
            )
            .is_ok());
    }

    #[test]
    fn a_configured_prefix_is_trusted_and_nothing_beside_it() {
        let sns = receiver(&["http://127.0.0.1:8080/sns/"]);
        assert!(sns
            .allowed_url("http://127.0.0.1:8080/sns/cert", UrlUse::SigningCertificate)
            .is_ok());
        for bad in [
            "http://127.0.0.1:8080/other/cert.pem",
            "http://127.0.0.1:80801/sns/cert.pem",
            "http://127.0.0.1:8080@evil.example/sns/cert.pem",
        ] {
            assert!(sns.allowed_url(bad, UrlUse::SigningCertificate).is_err(), "{bad}");
        }
    }

    fn ses(value: Value) -> SesNotification {
        SesNotification::interpret(&value.to_string())
    }

    #[test]
    fn a_permanent_bounce_suppresses_each_recipient_with_its_diagnostic() {
        let event = ses(json!({
            "notificationType": "Bounce",
            "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {"emailAddress": "Gone@Example.com", "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
                    {"emailAddress": "also-gone@example.com"},
                    {"emailAddress": "not an address"}
                ]
            }
        }));
        let SesNotification::Suppress {
            reason,
            suppressions,
            unparseable,
        } = event
        else {
            panic!("suppresses: {event:?}");
        };
        assert_eq!(reason, Reason::Bounce);
        let found: Vec<(&str, &str)> = suppressions
            .iter()
            .map(|s| (s.address.as_str(), s.detail.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "gone@example.com",
                    "Permanent/General: smtp; 550 5.1.1 user unknown"
                ),
                ("also-gone@example.com", "Permanent/General"),
            ]
        );
        assert_eq!(unparseable, ["not an address"]);
    }

    #[test]
    fn complaints_suppress_and_event_publishing_shapes_are_read_too() {
        let event = ses(json!({
            "eventType": "Complaint",
            "complaint": {
                "complaintFeedbackType": "abuse",
                "complainedRecipients": [{"emailAddress": "angry@example.com"}]
            }
        }));
        let SesNotification::Suppress {
            reason, suppressions, ..
        } = event
        else {
            panic!("suppresses: {event:?}");
        };
        assert_eq!(reason, Reason::Complaint);
        assert_eq!(suppressions[0].address.as_str(), "angry@example.com");
        assert_eq!(suppressions[0].detail, "abuse");
    }

    #[test]
    fn transient_bounces_deliveries_and_noise_are_ignored() {
        for event in [
            json!({"notificationType": "Bounce", "bounce": {"bounceType": "Transient",
                "bouncedRecipients": [{"emailAddress": "full@example.com"}]}}),
            json!({"notificationType": "Delivery", "delivery": {"recipients": ["a@example.com"]}}),
            json!({"something": "else"}),
            json!("just a string"),
        ] {
            assert!(
                matches!(ses(event.clone()), SesNotification::Ignore(_)),
                "{event}"
            );
        }
        assert!(matches!(
            SesNotification::interpret("plain text"),
            SesNotification::Ignore(_)
        ));
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
            Just(json!("1")),
            Just(json!("Notification")),
            Just(json!("SubscriptionConfirmation")),
            Just(json!("2012-05-02T00:54:06.655Z")),
        ];
        let key = prop_oneof![
            Just("Type".to_owned()),
            Just("Message".to_owned()),
            Just("MessageId".to_owned()),
            Just("Subject".to_owned()),
            Just("Timestamp".to_owned()),
            Just("TopicArn".to_owned()),
            Just("SignatureVersion".to_owned()),
            Just("Signature".to_owned()),
            Just("SigningCertURL".to_owned()),
            Just("SubscribeURL".to_owned()),
            Just("Token".to_owned()),
            Just("notificationType".to_owned()),
            Just("bounce".to_owned()),
            Just("bouncedRecipients".to_owned()),
            Just("emailAddress".to_owned()),
            "\\PC{0,8}",
        ];
        leaf.prop_recursive(3, 32, 8, move |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                btree_map(key.clone(), inner, 0..10).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_json_or_bytes_never_panic(value in any_json(), bytes in vec(any::<u8>(), 0..200)) {
            let text = value.to_string();
            if let Ok(message) = SnsMessage::parse(text.as_bytes()) {
                let last = format!("Type\n{}\n", message.kind.name());
                prop_assert!(message.string_to_sign().ends_with(&last));
            }
            let _ = SnsMessage::parse(&bytes);
            let _ = SesNotification::interpret(&text);
            let _ = SesNotification::interpret(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn signed_fields_keep_their_order_whatever_their_values(
            message in "\\PC{0,40}",
            message_id in "\\PC{0,20}",
            subject in proptest::option::of("\\PC{0,20}"),
            topic in "\\PC{0,20}",
            token in "\\PC{0,20}",
            confirm in any::<bool>(),
        ) {
            let mut body = if confirm { confirmation() } else { notification() };
            body["Message"] = json!(message);
            body["MessageId"] = json!(message_id);
            body["TopicArn"] = json!(topic);
            body["Token"] = json!(token);
            body["Subject"] = json!(subject);
            let parsed = parse(&body).unwrap();
            let signed = parsed.string_to_sign();
            let names: &[&str] = if confirm {
                &["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
            } else if subject.is_some() {
                &["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
            } else {
                &["Message", "MessageId", "Timestamp", "TopicArn", "Type"]
            };
            let mut expected = String::new();
            for name in names {
                let value = body[*name].as_str().unwrap();
                expected.push_str(&format!("{name}\n{value}\n"));
            }
            prop_assert_eq!(signed, expected);
        }
    }
}
