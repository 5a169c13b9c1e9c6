//! Configuration: `config/default.toml`, then the profile
//! `config/$LECTERN_ENV.toml` (both built into the binary, so that it runs
//! from anywhere), then the same profile's file in the configuration
//! directory if there is one, then `local.toml` there, then `DATABASE_URL`
//! and `LECTERN__SECTION__KEY` environment variables. A bad value is one
//! error that names the key and where the value came from.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::{Figment, Metadata, Source};
use lectern_actors::alerts::digest::DigestSchedule;
use lectern_actors::alerts::watch::{CertificateWatch, WatchConfig};
use lectern_actors::backup::scheduler::{BackupPlan, Schedule};
use lectern_actors::backup::{BackupError, DirStorage, S3Storage, Storage};
use lectern_actors::mail::EmailAddress;
use lectern_actors::supervisor::restarts::StormPolicy;
use lectern_actors::supervisor::AlertsConfig;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The documented defaults, built in so that the binary runs from anywhere.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
/// The shipped profiles, built in for the same reason; a file of the same
/// name in the configuration directory overrides them key by key.
const PROFILE_TOMLS: [(Environment, &str); 3] = [
    (
        Environment::Development,
        include_str!("../config/development.toml"),
    ),
    (Environment::Test, include_str!("../config/test.toml")),
    (Environment::Production, include_str!("../config/production.toml")),
];
/// Where the configuration directory is looked for when `--config-dir` is
/// not given (it need not exist).
pub const DEFAULT_CONFIG_DIR: &str = "config";
const ENV_PREFIX: &str = "LECTERN__";

/// The longest `server.drain_secs`: a drain delays every stop.
const MAX_DRAIN_SECS: u64 = 10;

/// Which `config/NAME.toml` is layered over the defaults (`LECTERN_ENV`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Test => "test",
            Environment::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "development" => Ok(Environment::Development),
            "test" => Ok(Environment::Test),
            "production" => Ok(Environment::Production),
            other => Err(ConfigError {
                key: "LECTERN_ENV".into(),
                origin: "the environment".into(),
                message: format!("unknown environment `{other}`, expected development, test or production"),
            }),
        }
    }
}

/// The effective configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(skip_deserializing, default = "default_environment")]
    pub environment: Environment,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub log: LogSettings,
    pub supervisor: SupervisorSettings,
    pub cache: CacheSettings,
    pub content: ContentSettings,
    pub accounts: AccountsSettings,
    pub renderer: RendererSettings,
    pub stripe: StripeSettings,
    pub pricing: PricingSettings,
    pub billing: BillingSettings,
    pub mail: MailSettings,
    pub backup: BackupSettings,
    pub alerts: AlertSettings,
}

fn default_environment() -> Environment {
    Environment::Development
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: SocketAddr,
    /// Unset: `http://` and the bound address (see [`Settings::public_url`]).
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    pub workers: usize,
    pub max_body_bytes: usize,
    pub keep_alive_secs: u64,
    /// How long a request's head may take to arrive, from its first byte
    /// (every request of a connection, see `http::connection`).
    pub request_head_timeout_secs: u64,
    /// On SIGTERM, how long every response closes its connection before the
    /// server stops accepting (see `startup::Shutdown`); 0: no drain.
    pub drain_secs: u64,
    pub shutdown_timeout_secs: u64,
    pub hsts_max_age_secs: u64,
    /// Header the trusted proxy puts the client's address in; empty: the peer address.
    pub client_ip_header: String,
    /// Lets a client that is not on this machine read `/readyz`'s detail
    /// (and, later, `/metrics`) with `Authorization: Bearer TOKEN`.
    pub metrics_token: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: Option<DatabaseUrl>,
    pub pool_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warning,
    Info,
    Debug,
    Trace,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: LogLevel,
    pub file: PathBuf,
    pub terminal: bool,
    /// How often the events table gets the events recorded since the last write.
    pub events_flush_secs: u64,
    /// Whether page views are recorded (`page_views`).
    pub page_views: bool,
    /// Tallies of page views held for the EventLog at most.
    pub page_view_buffer: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorSettings {
    pub max_restarts: u32,
    pub within_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    pub enabled: bool,
    pub capacity_mb: u64,
    pub schedule_check_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContentSettings {
    pub max_markdown_kb: usize,
    pub allow_raw_html: bool,
    pub demo_when_empty: bool,
    /// Searches one client address may run a minute (results not cached yet).
    pub searches_per_minute: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsSettings {
    pub secure_cookies: bool,
    pub session_days: u32,
    pub min_password_chars: usize,
    pub max_password_chars: usize,
    /// Password hashes and verifications running at once (19 MiB each).
    pub concurrent_hashes: usize,
    /// Emails that sign-ups, login links and resets may send one address a day.
    pub emails_per_address_per_day: u32,
    pub rate_limit: RateLimitSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub window_secs: u32,
    pub per_ip: u32,
    pub per_email: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RendererSettings {
    pub threads: usize,
    pub live_templates: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StripeSettings {
    pub api_base: String,
    pub secret_key: Option<Secret>,
    /// One or more signing secrets, comma-separated (two while rotating).
    pub webhook_secret: Option<Secret>,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BillingSettings {
    /// The plans by their name in forms and URLs (`monthly`, `yearly`).
    pub plans: std::collections::BTreeMap<String, PlanSettings>,
    pub grace_days: u32,
    pub reconcile_every_hours: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSettings {
    pub name: String,
    pub price_id: String,
    /// In the currency's minor units: 1900 is 19.00 USD.
    pub amount: i64,
    pub currency: String,
    /// `month` or `year`.
    pub interval: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PricingSettings {
    pub country_header: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MailBackend {
    Ses,
    File,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MailSettings {
    pub backend: MailBackend,
    pub from: String,
    pub max_per_second: u32,
    pub concurrency: usize,
    pub poll_secs: u64,
    pub max_attempts: u32,
    pub retry_base_secs: u64,
    /// Days a sent or dead email stays in the outbox before it is deleted.
    pub keep_days: u32,
    pub ses: SesSettings,
    pub sns: SnsSettings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SesSettings {
    pub endpoint: Option<String>,
    pub region: String,
}

/// Bounce and complaint notifications from SES, through SNS (`POST /webhooks/ses`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnsSettings {
    pub topic_arns: Vec<String>,
    pub allowed_url_prefixes: Vec<String>,
    pub max_age_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupStorage {
    S3,
    Dir,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    pub storage: BackupStorage,
    /// The directory of `storage = "dir"`, relative to `server.data_dir`.
    pub dir: PathBuf,
    /// Cron patterns in UTC (five fields, or six with seconds first); empty: none.
    pub daily: String,
    pub weekly: String,
    /// How many verified backups of each kind are kept.
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub s3: S3Settings,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub bucket: String,
    pub region: String,
    /// Put before every key; leading and trailing slashes are dropped.
    pub prefix: String,
    /// Addresses objects as `endpoint/bucket/key` (MinIO, moto).
    pub path_style: bool,
}

impl S3Settings {
    /// The storage's configuration, the prefix without leading or trailing slashes.
    pub fn config(&self) -> lectern_actors::backup::S3Config {
        lectern_actors::backup::S3Config {
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            prefix: self.prefix.trim_matches('/').to_owned(),
            path_style: self.path_style,
        }
    }
}

/// Where the operator is told what needs them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    /// The operator's address; unset, alerts are only logged.
    pub email: Option<String>,
    /// More restarts of one actor than this within `restart_storm_secs`
    /// are alerted on; below `supervisor.max_restarts`.
    pub restart_storm_restarts: u32,
    pub restart_storm_secs: u64,
    /// A database unreachable this long is alerted on (once it is back).
    pub database_down_secs: u64,
    pub dead_letters_check_secs: u64,
    /// A PEM certificate (certbot's fullchain.pem); read when checked, so
    /// a missing or unreadable one is an alert, not a refusal to start.
    pub tls_certificate: Option<PathBuf>,
    pub tls_warn_days: u32,
    /// The weekly digest's day (`monday` … `sunday`), or `""` for none.
    pub digest_weekday: String,
    /// Its hour, UTC.
    pub digest_hour: u8,
}

/// A weekday by its English name, in any case; `None` for an empty name.
fn weekday(name: &str) -> Result<Option<time::Weekday>, ()> {
    use time::Weekday::*;
    let name = name.trim().to_ascii_lowercase();
    let day = match name.as_str() {
        "" => return Ok(None),
        "monday" => Monday,
        "tuesday" => Tuesday,
        "wednesday" => Wednesday,
        "thursday" => Thursday,
        "friday" => Friday,
        "saturday" => Saturday,
        "sunday" => Sunday,
        _ => return Err(()),
    };
    Ok(Some(day))
}

/// A backup schedule; an empty pattern is none.
fn schedule(pattern: &str) -> Result<Option<Schedule>, String> {
    match pattern.trim() {
        "" => Ok(None),
        pattern => pattern.parse().map(Some),
    }
}

/// A secret value: never printed, never logged, shown as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // An environment variable that looks like a number arrives as one.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Unsigned(u64),
            Signed(i64),
        }
        Ok(Secret(match Raw::deserialize(d)? {
            Raw::Text(s) => s,
            Raw::Unsigned(n) => n.to_string(),
            Raw::Signed(n) => n.to_string(),
        }))
    }
}

/// A PostgreSQL connection string (URL or `key=value` form); its password
/// is redacted wherever it is shown.
#[derive(Clone)]
pub struct DatabaseUrl {
    raw: String,
    parsed: tokio_postgres::Config,
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<DatabaseUrl, String> {
        let parsed = tokio_postgres::Config::from_str(raw)
            .map_err(|e| format!("not a PostgreSQL connection string: {e}"))?;
        Ok(DatabaseUrl {
            raw: raw.to_owned(),
            parsed,
        })
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.parsed
    }

    /// The string with any password replaced by `***`: in a URL's user
    /// information or its query string, or a key=value pair.
    pub fn redacted(&self) -> String {
        fn is_secret(key: &str) -> bool {
            matches!(key, "password" | "sslpassword")
        }
        if self.parsed.get_password().is_none() && !self.raw.contains("password=") {
            return self.raw.clone();
        }
        if let Some((scheme, rest)) = self.raw.split_once("://") {
            let (location, query) = match rest.split_once('?') {
                Some((location, query)) => (location, Some(query)),
                None => (rest, None),
            };
            let location = match location.rsplit_once('@') {
                Some((credentials, host)) if credentials.contains(':') => {
                    let user = credentials.split(':').next().unwrap_or("");
                    format!("{user}:***@{host}")
                }
                _ => location.to_owned(),
            };
            let Some(query) = query else {
                return format!("{scheme}://{location}");
            };
            let query = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if is_secret(key) => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("&");
            return format!("{scheme}://{location}?{query}");
        }
        self.raw
            .split_whitespace()
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret(key) => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        DatabaseUrl::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A configuration value that cannot be used, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {key} (from {origin}): {message}")]
pub struct ConfigError {
    pub key: String,
    pub origin: String,
    pub message: String,
}

impl Settings {
    /// Reads the built-in layers, those in `config_dir` (missing files are
    /// skipped) and the process environment.
    pub fn load(config_dir: &Path) -> Result<Settings, ConfigError> {
        let environment = match std::env::var("LECTERN_ENV") {
            Ok(name) => name.parse()?,
            Err(_) => Environment::Development,
        };
        let profile = PROFILE_TOMLS
            .iter()
            .find(|(name, _)| *name == environment)
            .map_or("", |(_, toml)| *toml);
        let figment = Figment::new()
            .merge(Toml::string(DEFAULT_TOML))
            .merge(Toml::string(profile))
            .merge(Toml::file(
                config_dir.join(format!("{}.toml", environment.as_str())),
            ))
            .merge(Toml::file(config_dir.join("local.toml")))
            .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database.url".into()))
            .merge(Env::prefixed(ENV_PREFIX).split("__"));
        Settings::from_figment(&figment, environment)
    }

    /// Extracts and checks settings from layers already merged.
    pub fn from_figment(figment: &Figment, environment: Environment) -> Result<Settings, ConfigError> {
        let mut settings: Settings = figment.extract().map_err(|e| describe(figment, e))?;
        settings.environment = environment;
        settings.reject_secrets_in_tracked_files(figment, environment)?;
        settings.validate(figment)?;
        Ok(settings)
    }

    /// Secrets may come from the environment or `config/local.toml` (kept
    /// out of git), never from a file that is committed.
    fn reject_secrets_in_tracked_files(
        &self,
        figment: &Figment,
        environment: Environment,
    ) -> Result<(), ConfigError> {
        let tracked = [
            "default.toml".to_owned(),
            format!("{}.toml", environment.as_str()),
        ];
        for (key, set) in [
            ("stripe.secret_key", self.stripe.secret_key.is_some()),
            ("stripe.webhook_secret", self.stripe.webhook_secret.is_some()),
            ("server.metrics_token", self.server.metrics_token.is_some()),
        ] {
            let origin = figment.find_metadata(key).map(origin_of);
            if let Some(origin) = origin.filter(|_| set) {
                if tracked.iter().any(|f| origin.ends_with(f.as_str())) {
                    let env_name = format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase());
                    return Err(ConfigError {
                        key: key.into(),
                        origin,
                        message: format!(
                            "a secret must not be in a committed file; set {env_name} or put it in config/local.toml"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn validate(&self, figment: &Figment) -> Result<(), ConfigError> {
        let fail = |key: &str, message: &str| {
            Err(ConfigError {
                key: key.into(),
                origin: figment
                    .find_metadata(key)
                    .map(origin_of)
                    .unwrap_or_else(|| "config/default.toml".into()),
                message: message.into(),
            })
        };
        if self.database.pool_size > 1000 {
            return fail("database.pool_size", "must be at most 1000");
        }
        if self.server.max_body_bytes < 1024 {
            return fail("server.max_body_bytes", "must be at least 1024");
        }
        if self.server.drain_secs > MAX_DRAIN_SECS {
            return fail(
                "server.drain_secs",
                &format!(
                    "must be at most {MAX_DRAIN_SECS}: it adds to every stop, which systemd's TimeoutStopSec bounds"
                ),
            );
        }
        if self.server.shutdown_timeout_secs > 3600 {
            return fail("server.shutdown_timeout_secs", "must be at most 3600");
        }
        if !(1..=300).contains(&self.server.request_head_timeout_secs) {
            return fail("server.request_head_timeout_secs", "must be between 1 and 300");
        }
        if self.backup.dir.as_os_str().is_empty() {
            return fail("backup.dir", "must not be empty");
        }
        if self.server.data_dir.as_os_str().is_empty() {
            return fail("server.data_dir", "must not be empty");
        }
        if let Some(public_url) = &self.server.public_url {
            let parsed = url::Url::parse(public_url).ok();
            let is_origin = parsed.as_ref().is_some_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && url.host().is_some()
                    && url.username().is_empty()
                    && url.path() == "/"
                    && url.query().is_none()
                    && url.fragment().is_none()
            });
            if !is_origin || public_url.ends_with('/') {
                return fail(
                    "server.public_url",
                    "must be an http:// or https:// URL with a host and nothing after it, e.g. https://example.com",
                );
            }
        }
        if self.environment == Environment::Production {
            let loopback = self
                .server
                .public_url
                .as_deref()
                .and_then(|url| url::Url::parse(url).ok())
                .is_none_or(|url| match url.host() {
                    Some(url::Host::Domain(name)) => name == "localhost" || name.ends_with(".localhost"),
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback() || ip.is_unspecified(),
                    None => true,
                });
            if loopback {
                return Err(ConfigError {
                    key: "server.public_url".into(),
                    origin: figment
                        .find_metadata("server.public_url")
                        .map_or_else(|| "unset, under LECTERN_ENV=production".into(), origin_of),
                    message: "the production profile needs the site's public address, which emailed links, \
                              feeds and the sitemap use: set LECTERN__SERVER__PUBLIC_URL=https://your.domain \
                              or server.public_url in config/local.toml"
                        .into(),
                });
            }
        }
        if self.cache.schedule_check_secs == 0 {
            return fail("cache.schedule_check_secs", "must be at least 1");
        }
        if self.cache.capacity_mb == 0 || self.cache.capacity_mb > 65_536 {
            return fail("cache.capacity_mb", "must be between 1 and 65536");
        }
        if self.content.max_markdown_kb == 0 || self.content.max_markdown_kb > 16_384 {
            return fail("content.max_markdown_kb", "must be between 1 and 16384");
        }
        if self.log.events_flush_secs == 0 {
            return fail("log.events_flush_secs", "must be at least 1");
        }
        if !(1..=1_000_000).contains(&self.log.page_view_buffer) {
            return fail("log.page_view_buffer", "must be between 1 and 1000000");
        }
        if self.supervisor.max_restarts == 0 {
            return fail("supervisor.max_restarts", "must be at least 1");
        }
        if self.supervisor.within_secs == 0 {
            return fail("supervisor.within_secs", "must be at least 1");
        }
        if !(self.stripe.api_base.starts_with("https://") || self.stripe.api_base.starts_with("http://")) {
            return fail("stripe.api_base", "must be an http:// or https:// URL");
        }
        if self.pricing.country_header.is_empty()
            || !self
                .pricing
                .country_header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return fail("pricing.country_header", "must be an HTTP header name");
        }
        if self.stripe.timeout_secs == 0 || self.stripe.timeout_secs > 120 {
            return fail("stripe.timeout_secs", "must be between 1 and 120");
        }
        if self.billing.plans.is_empty() {
            return fail("billing.plans", "must name at least one plan");
        }
        for (id, plan) in &self.billing.plans {
            let key = |field: &str| format!("billing.plans.{id}.{field}");
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return fail(
                    &key("name"),
                    "a plan's key must be lower-case letters, digits and hyphens",
                );
            }
            if plan.name.trim().is_empty() || plan.name.len() > 60 {
                return fail(&key("name"), "must be 1 to 60 characters");
            }
            if !plan.price_id.starts_with("price_") || plan.price_id.contains(char::is_whitespace) {
                return fail(&key("price_id"), "must be a Stripe Price id (price_…)");
            }
            if plan.amount <= 0 || plan.amount > 100_000_000 {
                return fail(
                    &key("amount"),
                    "must be a positive amount in minor units (1900 is 19.00)",
                );
            }
            if plan.currency.len() != 3 || !plan.currency.bytes().all(|b| b.is_ascii_alphabetic()) {
                return fail(
                    &key("currency"),
                    "must be a three-letter currency code (usd, eur)",
                );
            }
            if !matches!(plan.interval.as_str(), "month" | "year") {
                return fail(&key("interval"), "must be month or year");
            }
        }
        if self.billing.grace_days > 60 {
            return fail("billing.grace_days", "must be at most 60");
        }
        if self.billing.reconcile_every_hours == 0 || self.billing.reconcile_every_hours > 168 {
            return fail("billing.reconcile_every_hours", "must be between 1 and 168");
        }
        let header = &self.server.client_ip_header;
        if !header.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return fail("server.client_ip_header", "must be empty or an HTTP header name");
        }
        let accounts = &self.accounts;
        if accounts.concurrent_hashes == 0 || accounts.concurrent_hashes > 256 {
            return fail("accounts.concurrent_hashes", "must be between 1 and 256");
        }
        if accounts.session_days == 0 || accounts.session_days > 3650 {
            return fail("accounts.session_days", "must be between 1 and 3650");
        }
        if accounts.min_password_chars < 8 {
            return fail("accounts.min_password_chars", "must be at least 8");
        }
        if accounts.max_password_chars < accounts.min_password_chars || accounts.max_password_chars > 1024 {
            return fail(
                "accounts.max_password_chars",
                "must be at least accounts.min_password_chars and at most 1024",
            );
        }
        for (key, value) in [
            ("accounts.rate_limit.window_secs", accounts.rate_limit.window_secs),
            ("accounts.rate_limit.per_ip", accounts.rate_limit.per_ip),
            ("accounts.rate_limit.per_email", accounts.rate_limit.per_email),
            (
                "accounts.emails_per_address_per_day",
                accounts.emails_per_address_per_day,
            ),
            ("content.searches_per_minute", self.content.searches_per_minute),
            ("mail.max_per_second", self.mail.max_per_second),
            ("mail.keep_days", self.mail.keep_days),
            ("mail.max_attempts", self.mail.max_attempts),
        ] {
            if value == 0 {
                return fail(key, "must be at least 1");
            }
        }
        if self.mail.concurrency == 0 || self.mail.concurrency > 64 {
            return fail("mail.concurrency", "must be between 1 and 64");
        }
        if self.mail.poll_secs == 0 || self.mail.poll_secs > 3600 {
            return fail("mail.poll_secs", "must be between 1 and 3600");
        }
        if self.mail.retry_base_secs == 0 || self.mail.retry_base_secs > 3600 {
            return fail("mail.retry_base_secs", "must be between 1 and 3600");
        }
        for (key, pattern) in [
            ("backup.daily", &self.backup.daily),
            ("backup.weekly", &self.backup.weekly),
        ] {
            if let Err(e) = schedule(pattern) {
                return fail(
                    key,
                    &format!(
                        "{e} (five fields, minute first, or six with seconds first; UTC; empty for none)"
                    ),
                );
            }
        }
        for (key, keep) in [
            ("backup.keep_daily", self.backup.keep_daily),
            ("backup.keep_weekly", self.backup.keep_weekly),
        ] {
            if keep == 0 || keep > 1000 {
                return fail(key, "must be between 1 and 1000");
            }
        }
        self.validate_alerts(&fail)?;
        let sns = &self.mail.sns;
        if !sns.topic_arns.iter().all(|arn| is_sns_topic_arn(arn)) {
            return fail(
                "mail.sns.topic_arns",
                "each must be an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
            );
        }
        if !sns
            .allowed_url_prefixes
            .iter()
            .all(|prefix| is_url_prefix(prefix))
        {
            return fail(
                "mail.sns.allowed_url_prefixes",
                "each must be an http:// or https:// URL with a host, ending in a slash after the host",
            );
        }
        if sns.max_age_secs < 60 || sns.max_age_secs > 86_400 {
            return fail("mail.sns.max_age_secs", "must be between 60 and 86400");
        }
        self.validate_backup(&fail)?;
        Ok(())
    }

    fn validate_alerts(
        &self,
        fail: &dyn Fn(&str, &str) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        let alerts = &self.alerts;
        if let Some(email) = &alerts.email {
            if EmailAddress::parse(email).is_err() {
                return fail("alerts.email", "must be an email address");
            }
        }
        if alerts.restart_storm_restarts == 0 || alerts.restart_storm_restarts >= self.supervisor.max_restarts
        {
            return fail(
                "alerts.restart_storm_restarts",
                "must be at least 1 and below supervisor.max_restarts (the storm is told before Lectern exits)",
            );
        }
        for (key, secs) in [
            ("alerts.restart_storm_secs", alerts.restart_storm_secs),
            ("alerts.database_down_secs", alerts.database_down_secs),
            ("alerts.dead_letters_check_secs", alerts.dead_letters_check_secs),
        ] {
            if secs == 0 || secs > 86_400 {
                return fail(key, "must be between 1 and 86400 seconds");
            }
        }
        if alerts.tls_warn_days == 0 || alerts.tls_warn_days > 365 {
            return fail("alerts.tls_warn_days", "must be between 1 and 365");
        }
        if alerts
            .tls_certificate
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return fail(
                "alerts.tls_certificate",
                "must be the path of a PEM certificate, or unset",
            );
        }
        if weekday(&alerts.digest_weekday).is_err() {
            return fail(
                "alerts.digest_weekday",
                "must be a day of the week (monday … sunday), or \"\" for no digest",
            );
        }
        if alerts.digest_hour > 23 {
            return fail("alerts.digest_hour", "must be an hour from 0 to 23 (UTC)");
        }
        Ok(())
    }

    /// Whom alerts go to, and what the AlertWatch watches (the values were
    /// checked at load).
    pub fn alerts_config(&self) -> AlertsConfig {
        let alerts = &self.alerts;
        AlertsConfig {
            to: alerts.email.as_deref().and_then(|e| EmailAddress::parse(e).ok()),
            storm: StormPolicy {
                restarts: alerts.restart_storm_restarts,
                within: Duration::from_secs(alerts.restart_storm_secs),
            },
            watch: WatchConfig {
                dead_letters_every: Duration::from_secs(alerts.dead_letters_check_secs),
                database_down_after: Duration::from_secs(alerts.database_down_secs),
                certificate: alerts.tls_certificate.clone().map(|path| CertificateWatch {
                    path,
                    warn_within: Duration::from_secs(u64::from(alerts.tls_warn_days) * 86_400),
                }),
                digest: weekday(&alerts.digest_weekday)
                    .ok()
                    .flatten()
                    .map(|weekday| DigestSchedule {
                        weekday,
                        hour: alerts.digest_hour,
                    }),
            },
        }
    }

    fn validate_backup(
        &self,
        fail: &dyn Fn(&str, &str) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        let s3 = &self.backup.s3;
        if let Some(endpoint) = &s3.endpoint {
            let is_http = url::Url::parse(endpoint)
                .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some());
            if !is_http {
                return fail(
                    "backup.s3.endpoint",
                    "must be an http:// or https:// URL, e.g. https://fra1.digitaloceanspaces.com \
                     (leave it unset for AWS S3)",
                );
            }
        }
        let prefix = s3.prefix.trim_matches('/');
        if !prefix.is_empty() && prefix.split('/').any(|part| matches!(part, "" | "." | "..")) {
            return fail(
                "backup.s3.prefix",
                "must be names separated by single slashes (site/backups), without . or ..",
            );
        }
        if self.backup.storage == BackupStorage::S3 {
            if s3.bucket.trim().is_empty() {
                return fail(
                    "backup.s3.bucket",
                    "must name the bucket the backups go to when backup.storage = \"s3\"",
                );
            }
            if s3.bucket.contains(['/', ' ']) {
                return fail(
                    "backup.s3.bucket",
                    "must be a bucket name, without slashes or spaces",
                );
            }
            if s3.region.trim().is_empty() {
                return fail(
                    "backup.s3.region",
                    "must name the bucket's region (us-east-1 for MinIO and most others)",
                );
            }
        }
        Ok(())
    }

    /// What the BackupScheduler does (the values were checked at load).
    pub fn backup_plan(&self) -> BackupPlan {
        BackupPlan {
            daily: schedule(&self.backup.daily).ok().flatten(),
            weekly: schedule(&self.backup.weekly).ok().flatten(),
            keep_daily: self.backup.keep_daily,
            keep_weekly: self.backup.keep_weekly,
        }
    }

    /// The configured backup storage: a directory, or a bucket (whose fetched
    /// objects are copied under the backup directory while they are checked).
    pub fn backup_storage(&self) -> Result<Arc<dyn Storage>, BackupError> {
        let dir = self.backup_dir();
        Ok(match self.backup.storage {
            BackupStorage::Dir => Arc::new(DirStorage::new(dir)),
            BackupStorage::S3 => Arc::new(S3Storage::new(&self.backup.s3.config(), dir)?),
        })
    }

    /// How SNS messages are checked.
    pub fn sns_config(&self) -> lectern_actors::mail::sns::SnsConfig {
        let sns = &self.mail.sns;
        lectern_actors::mail::sns::SnsConfig {
            topic_arns: sns.topic_arns.clone(),
            allowed_url_prefixes: sns.allowed_url_prefixes.clone(),
            max_age: std::time::Duration::from_secs(sns.max_age_secs),
        }
    }

    /// The configured plans, in the order their keys sort.
    pub fn plans(&self) -> Vec<lectern_actors::billing::Plan> {
        use lectern_actors::billing::{Interval, Money, Plan};
        self.billing
            .plans
            .iter()
            .map(|(id, plan)| Plan {
                id: id.clone(),
                name: plan.name.clone(),
                price_id: plan.price_id.clone(),
                price: Money::new(plan.amount, &plan.currency),
                interval: if plan.interval == "year" {
                    Interval::Year
                } else {
                    Interval::Month
                },
            })
            .collect()
    }

    /// Where Stripe serves the pages Lectern sends members to (Checkout, the
    /// customer portal): Stripe's own hosts, or a stand-in's host when
    /// `stripe.api_base` names one (tests, a local mock).
    pub fn stripe_page_origins(&self) -> Vec<String> {
        match url::Url::parse(&self.stripe.api_base) {
            Ok(url) if url.host_str() == Some("api.stripe.com") => {
                vec![
                    "https://checkout.stripe.com".into(),
                    "https://billing.stripe.com".into(),
                ]
            }
            Ok(url) => vec![url.origin().ascii_serialization()],
            Err(_) => Vec::new(),
        }
    }

    /// The webhook's signing secrets: one, or several while rotating.
    pub fn webhook_secrets(&self) -> Vec<String> {
        self.stripe
            .webhook_secret
            .as_ref()
            .map(|secret| {
                secret
                    .expose()
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The site's public address, without a trailing slash: the configured
    /// one, or `http://` and the bound address (an unspecified address
    /// such as 0.0.0.0 stands for this machine's loopback).
    pub fn public_url(&self) -> String {
        if let Some(url) = &self.server.public_url {
            return url.clone();
        }
        let mut address = self.server.bind;
        if address.ip().is_unspecified() {
            address.set_ip(match address {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{address}")
    }

    /// A path from the configuration, resolved under `server.data_dir` when relative.
    pub fn data_path(&self, path: &Path) -> PathBuf {
        self.server.data_dir.join(path)
    }

    /// Where `backup.storage = "dir"` keeps the backups.
    pub fn backup_dir(&self) -> PathBuf {
        self.data_path(&self.backup.dir)
    }

    pub fn log_file(&self) -> PathBuf {
        self.data_path(&self.log.file)
    }

    /// How Markdown is compiled at import.
    pub fn markdown_options(&self) -> lectern_actors::content::markdown::MarkdownOptions {
        lectern_actors::content::markdown::MarkdownOptions {
            max_bytes: self.content.max_markdown_kb * 1024,
            allow_raw_html: self.content.allow_raw_html,
        }
    }

    /// The configuration as TOML, secrets redacted (`lectern config show`).
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"))
    }
}

/// `arn:PARTITION:sns:REGION:ACCOUNT:NAME`, every part present.
fn is_sns_topic_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "sns"
        && parts[3..].iter().all(|part| !part.is_empty())
}

/// `scheme://host[:port]/…/`: a prefix that ends in a slash after the host
/// cannot be stretched onto another host (`http://127.0.0.1:80` would
/// also match `http://127.0.0.1:8080`).
fn is_url_prefix(prefix: &str) -> bool {
    let Some(rest) = prefix
        .strip_prefix("https://")
        .or_else(|| prefix.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    !host.is_empty()
        && !host.contains('@')
        && rest.len() > host.len()
        && prefix.ends_with('/')
        && !prefix.contains(char::is_whitespace)
}

fn origin_of(metadata: &Metadata) -> String {
    match &metadata.source {
        Some(Source::File(path)) => {
            let cwd = std::env::current_dir().unwrap_or_default();
            path.strip_prefix(&cwd).unwrap_or(path).display().to_string()
        }
        Some(other) => other.to_string(),
        None if metadata.name.contains("environment") => "the environment".into(),
        None => "config/default.toml".into(),
    }
}

fn describe(figment: &Figment, error: figment::Error) -> ConfigError {
    let path = &error.path;
    let key = path.join(".");
    let origin = match &error.metadata {
        Some(metadata) if metadata.name.contains("environment") => {
            if key == "database.url" && std::env::var_os("LECTERN__DATABASE__URL").is_none() {
                "environment variable DATABASE_URL".to_owned()
            } else {
                format!(
                    "environment variable {ENV_PREFIX}{}",
                    path.join("__").to_uppercase()
                )
            }
        }
        Some(metadata) => origin_of(metadata),
        None => figment
            .find_metadata(&key)
            .map(origin_of)
            .unwrap_or_else(|| "the configuration".into()),
    };
    ConfigError {
        key: if key.is_empty() { "(top level)".into() } else { key },
        origin,
        message: error.kind.to_string(),
    }
}

#[cfg(test)]
// figment's `Jail` fixes the closures' error type, which is large.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load(jail: &mut Jail) -> Result<Settings, ConfigError> {
        Settings::load(&jail.directory().join("config"))
    }

    #[test]
    fn later_layers_win_defaults_env_file_local_file_database_url_variables() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            // Production keeps backups in a bucket, which has no default.
            jail.set_env("LECTERN__BACKUP__S3__BUCKET", "site-backups");
            jail.create_dir("config")?;
            jail.set_env("LECTERN_ENV", "production");
            jail.create_file(
                "config/production.toml",
                "[server]\nbind = \"0.0.0.0:5000\"\nworkers = 3\npublic_url = \"https://lectern.example\"\n[database]\npool_size = 4\n[log]\nlevel = \"error\"",
            )?;
            jail.create_file(
                "config/local.toml",
                "[server]\nworkers = 7\n[database]\npool_size = 5",
            )?;
            jail.set_env("LECTERN__DATABASE__POOL_SIZE", "6");
            jail.set_env("DATABASE_URL", "postgres://from-database-url/lectern");

            let settings = load(jail).map_err(|e| e.to_string())?;

            assert_eq!(settings.environment, Environment::Production);
            assert_eq!(
                settings.server.bind.to_string(),
                "0.0.0.0:5000",
                "environment file"
            );
            assert_eq!(settings.log.level, LogLevel::Error, "environment file");
            assert_eq!(settings.server.workers, 7, "local.toml over the environment file");
            assert_eq!(settings.database.pool_size, 6, "variables over files");
            assert_eq!(settings.server.hsts_max_age_secs, 31_536_000, "built-in profile");
            assert_eq!(settings.server.shutdown_timeout_secs, 30, "default kept");
            assert_eq!(settings.server.drain_secs, 1, "default kept");
            let url = settings.database.url.expect("DATABASE_URL is honoured");
            assert_eq!(url.config().get_dbname(), Some("lectern"));
            Ok(())
        });
    }

    #[test]
    fn lectern_database_url_wins_over_database_url() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("DATABASE_URL", "postgres://generic/one");
            jail.set_env("LECTERN__DATABASE__URL", "postgres://specific/two");

            let settings = load(jail).map_err(|e| e.to_string())?;

            let url = settings.database.url.expect("a URL");
            assert_eq!(url.config().get_dbname(), Some("two"));
            Ok(())
        });
    }

    #[test]
    fn development_is_the_default_environment_and_no_url_means_embedded() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let settings = load(jail).map_err(|e| e.to_string())?;
            assert_eq!(settings.environment, Environment::Development);
            assert!(settings.database.url.is_none());
            assert_eq!(settings.server.bind.to_string(), "127.0.0.1:4000");
            assert_eq!(settings.log_file(), PathBuf::from("var/log/lectern.log"));
            Ok(())
        });
    }

    #[test]
    fn the_shipped_profiles_are_built_in_and_files_on_disk_override_them() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            // No configuration directory at all: the built-in development profile.
            let settings = load(jail).map_err(|e| e.to_string())?;
            assert!(settings.log.terminal, "development logs to the terminal");
            assert!(settings.content.demo_when_empty, "development has demo content");

            jail.create_dir("config")?;
            jail.create_file("config/development.toml", "[log]\nterminal = false")?;
            let settings = load(jail).map_err(|e| e.to_string())?;
            assert!(!settings.log.terminal, "the file on disk wins");
            assert!(
                settings.content.demo_when_empty,
                "keys it does not set stay built in"
            );
            Ok(())
        });
    }

    #[test]
    fn production_refuses_an_unset_or_loopback_public_url_and_names_the_key() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            // Production keeps backups in a bucket, which has no default.
            jail.set_env("LECTERN__BACKUP__S3__BUCKET", "site-backups");
            jail.set_env("LECTERN_ENV", "production");
            let error = load(jail).expect_err("unset");
            assert_eq!(error.key, "server.public_url");
            assert!(
                error.message.contains("LECTERN__SERVER__PUBLIC_URL"),
                "{}",
                error.message
            );

            for loopback in [
                "http://127.0.0.1:4000",
                "http://localhost:4200",
                "http://[::1]",
                "http://0.0.0.0",
            ] {
                jail.set_env("LECTERN__SERVER__PUBLIC_URL", loopback);
                let error = load(jail).expect_err(loopback);
                assert_eq!(error.key, "server.public_url", "{loopback}");
            }

            jail.set_env("LECTERN__SERVER__PUBLIC_URL", "https://lectern.example");
            let settings = load(jail).map_err(|e| e.to_string())?;
            assert_eq!(settings.public_url(), "https://lectern.example");
            Ok(())
        });
    }

    #[test]
    fn a_secret_in_a_committed_file_is_refused() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_dir("config")?;
            jail.create_file(
                "config/development.toml",
                "[stripe]\nsecret_key = \"sk_live_oops\"",
            )?;

            let error = load(jail).expect_err("refused");

            assert_eq!(error.key, "stripe.secret_key");
            assert!(
                error.origin.ends_with("config/development.toml"),
                "{}",
                error.origin
            );
            assert!(
                error.message.contains("LECTERN__STRIPE__SECRET_KEY"),
                "{}",
                error.message
            );
            Ok(())
        });
    }

    #[test]
    fn a_secret_in_local_toml_or_the_environment_is_accepted_and_never_shown() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_dir("config")?;
            jail.create_file("config/local.toml", "[stripe]\nwebhook_secret = \"whsec_local\"")?;
            jail.set_env("LECTERN__STRIPE__SECRET_KEY", "4242424242");

            let settings = load(jail).map_err(|e| e.to_string())?;

            let stripe = &settings.stripe;
            assert_eq!(stripe.secret_key.as_ref().map(Secret::expose), Some("4242424242"));
            assert_eq!(
                stripe.webhook_secret.as_ref().map(Secret::expose),
                Some("whsec_local")
            );
            let shown = settings.to_redacted_toml();
            assert!(
                !shown.contains("4242424242") && !shown.contains("whsec_local"),
                "{shown}"
            );
            assert!(format!("{settings:?}").contains("<redacted>"));
            Ok(())
        });
    }

    #[test]
    fn checks_beyond_types_name_the_key() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("LECTERN__SUPERVISOR__MAX_RESTARTS", "0");
            let error = load(jail).expect_err("refused");
            assert_eq!(error.key, "supervisor.max_restarts");
            assert_eq!(error.origin, "the environment");
            assert_eq!(error.message, "must be at least 1");

            jail.set_env("LECTERN__SUPERVISOR__MAX_RESTARTS", "5");
            jail.set_env("LECTERN__SERVER__DRAIN_SECS", "11");
            let error = load(jail).expect_err("refused");
            assert_eq!(error.key, "server.drain_secs");
            assert!(
                error.message.starts_with("must be at most 10"),
                "{}",
                error.message
            );

            jail.set_env("LECTERN__SERVER__DRAIN_SECS", "0");
            jail.set_env("LECTERN__PRICING__COUNTRY_HEADER", "CF IPCountry");
            let error = load(jail).expect_err("refused");
            assert_eq!(error.key, "pricing.country_header");
            Ok(())
        });
    }

    #[test]
    fn backup_schedules_retention_and_the_alert_address_are_checked_and_named() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let plan = load(jail).map_err(|e| e.to_string())?.backup_plan();
            let (daily, weekly) = (plan.daily.expect("daily"), plan.weekly.expect("weekly"));
            let monday = time::macros::datetime!(2026-11-30 12:00:00 UTC);
            assert_eq!(
                daily.next_after(monday),
                Some(time::macros::datetime!(2026-12-01 03:00:00 UTC))
            );
            assert_eq!(
                weekly.next_after(monday),
                Some(time::macros::datetime!(2026-12-06 03:30:00 UTC))
            );
            assert_eq!((plan.keep_daily, plan.keep_weekly), (7, 5));
            assert_eq!(load(jail).map_err(|e| e.to_string())?.alerts_config().to, None);

            jail.set_env("LECTERN__BACKUP__WEEKLY", "");
            jail.set_env("LECTERN__ALERTS__EMAIL", "Ops@Example.com");
            let settings = load(jail).map_err(|e| e.to_string())?;
            assert!(settings.backup_plan().weekly.is_none(), "empty is none");
            assert_eq!(
                settings
                    .alerts_config()
                    .to
                    .map(|a| a.as_str().to_owned())
                    .as_deref(),
                Some("ops@example.com")
            );

            for (variable, value, key, message) in [
                (
                    "LECTERN__BACKUP__DAILY",
                    "3am",
                    "backup.daily",
                    "\"3am\" is not a cron pattern",
                ),
                (
                    "LECTERN__BACKUP__DAILY",
                    "0 0 31 2 *",
                    "backup.daily",
                    "never comes due",
                ),
                (
                    "LECTERN__BACKUP__KEEP_WEEKLY",
                    "0",
                    "backup.keep_weekly",
                    "between 1 and 1000",
                ),
                (
                    "LECTERN__ALERTS__EMAIL",
                    "ops",
                    "alerts.email",
                    "an email address",
                ),
                (
                    "LECTERN__ALERTS__RESTART_STORM_RESTARTS",
                    "5",
                    "alerts.restart_storm_restarts",
                    "below supervisor.max_restarts",
                ),
                (
                    "LECTERN__ALERTS__DATABASE_DOWN_SECS",
                    "0",
                    "alerts.database_down_secs",
                    "between 1 and 86400",
                ),
                (
                    "LECTERN__ALERTS__TLS_WARN_DAYS",
                    "0",
                    "alerts.tls_warn_days",
                    "between 1 and 365",
                ),
            ] {
                jail.clear_env();
                jail.set_env(variable, value);
                let error = load(jail).expect_err(value);
                assert_eq!(error.key, key, "{value}");
                assert!(error.message.contains(message), "{value}: {}", error.message);
            }
            Ok(())
        });
    }

    #[test]
    fn sns_keys_are_checked_and_named() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_dir("config")?;
            jail.create_file(
                "config/local.toml",
                "[mail.sns]\ntopic_arns = [\"arn:aws:sns:eu-west-1:123456789012:ses-feedback\"]\n\
                 allowed_url_prefixes = [\"http://127.0.0.1:9000/sns/\"]",
            )?;
            let settings = load(jail).map_err(|e| e.to_string())?;
            let sns = settings.sns_config();
            assert_eq!(
                sns.topic_arns,
                ["arn:aws:sns:eu-west-1:123456789012:ses-feedback"]
            );
            assert_eq!(sns.max_age.as_secs(), 3600, "default kept");

            for (key, value) in [
                ("LECTERN__MAIL__SNS__TOPIC_ARNS", "[\"arn:aws:s3:::bucket\"]"),
                (
                    "LECTERN__MAIL__SNS__ALLOWED_URL_PREFIXES",
                    "[\"http://127.0.0.1:9000\"]",
                ),
                (
                    "LECTERN__MAIL__SNS__ALLOWED_URL_PREFIXES",
                    "[\"http://user@evil.example/\"]",
                ),
                ("LECTERN__MAIL__SNS__MAX_AGE_SECS", "5"),
            ] {
                jail.set_env(key, value);
                let error = load(jail).expect_err(value);
                assert_eq!(
                    error.key,
                    key.trim_start_matches("LECTERN__")
                        .replace("__", ".")
                        .to_lowercase()
                );
                assert!(error.message.contains("must be"), "{}", error.message);
                jail.clear_env();
            }
            Ok(())
        });
    }

    #[test]
    fn s3_backup_keys_are_checked_and_named() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            // Production keeps backups in a bucket, which has no default.
            jail.set_env("LECTERN__BACKUP__S3__BUCKET", "site-backups");
            jail.set_env("LECTERN__BACKUP__STORAGE", "s3");
            jail.set_env("LECTERN__BACKUP__S3__PREFIX", "/site-a/backups/");
            let settings = load(jail).map_err(|e| e.to_string())?;
            let s3 = settings.backup.s3.config();
            assert_eq!(s3.prefix, "site-a/backups");
            assert_eq!((s3.endpoint, s3.path_style), (None, false));

            for (key, value, says) in [
                ("LECTERN__BACKUP__S3__BUCKET", "", "must name the bucket"),
                (
                    "LECTERN__BACKUP__S3__ENDPOINT",
                    "127.0.0.1:9000",
                    "http:// or https://",
                ),
                (
                    "LECTERN__BACKUP__S3__ENDPOINT",
                    "ftp://files.example",
                    "http:// or https://",
                ),
                ("LECTERN__BACKUP__S3__PREFIX", "a//b", "single slashes"),
                ("LECTERN__BACKUP__S3__PREFIX", "a/../b", "single slashes"),
            ] {
                jail.set_env(key, value);
                let error = load(jail).expect_err(value);
                assert_eq!(
                    error.key,
                    key.trim_start_matches("LECTERN__")
                        .replace("__", ".")
                        .to_lowercase()
                );
                assert_eq!(error.origin, "the environment");
                assert!(error.message.contains(says), "{}", error.message);
                jail.clear_env();
                // Production keeps backups in a bucket, which has no default.
                jail.set_env("LECTERN__BACKUP__S3__BUCKET", "site-backups");
                jail.set_env("LECTERN__BACKUP__STORAGE", "s3");
            }

            jail.set_env("LECTERN__BACKUP__S3__ENDPOINT", "http://127.0.0.1:9000");
            jail.set_env("LECTERN__BACKUP__S3__PATH_STYLE", "true");
            let s3 = load(jail).map_err(|e| e.to_string())?.backup.s3.config();
            assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
            assert!(s3.path_style);

            jail.set_env("LECTERN__BACKUP__STORAGE", "dir");
            jail.set_env("LECTERN__BACKUP__S3__BUCKET", "");
            load(jail).map_err(|e| e.to_string())?;
            Ok(())
        });
    }

    #[test]
    fn passwords_in_database_urls_are_redacted_in_both_forms() {
        let url = DatabaseUrl::parse("postgres://app:s3cret@db:5432/lectern").expect("valid");
        assert_eq!(url.redacted(), "postgres://app:***@db:5432/lectern");
        let kv = DatabaseUrl::parse("host=db user=app password=s3cret dbname=lectern").expect("valid");
        assert_eq!(kv.redacted(), "host=db user=app password=*** dbname=lectern");
        let plain = DatabaseUrl::parse("host=/run/postgresql dbname=lectern").expect("valid");
        assert_eq!(plain.redacted(), "host=/run/postgresql dbname=lectern");
        let query =
            DatabaseUrl::parse("postgres://app@db/lectern?sslmode=require&password=s3cret").expect("valid");
        assert_eq!(
            query.redacted(),
            "postgres://app@db/lectern?sslmode=require&password=***"
        );
        let both = DatabaseUrl::parse("postgresql://app:one@db/lectern?password=two").expect("valid");
        assert_eq!(both.redacted(), "postgresql://app:***@db/lectern?password=***");
        let at_in_query =
            DatabaseUrl::parse("postgres://db/lectern?application_name=a@b&password=x").expect("valid");
        assert_eq!(
            at_in_query.redacted(),
            "postgres://db/lectern?application_name=a@b&password=***"
        );
    }

    #[test]
    fn forms_may_lead_to_stripes_pages_or_to_a_stand_in() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let settings = load(jail).map_err(|e| e.to_string())?;
            assert_eq!(
                settings.stripe_page_origins(),
                ["https://checkout.stripe.com", "https://billing.stripe.com"]
            );
            jail.set_env("LECTERN__STRIPE__API_BASE", "http://127.0.0.1:9999/");
            let settings = load(jail).map_err(|e| e.to_string())?;
            assert_eq!(settings.stripe_page_origins(), ["http://127.0.0.1:9999"]);
            Ok(())
        });
    }
}
