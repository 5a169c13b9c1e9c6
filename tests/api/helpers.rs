//! The test harness: one PostgreSQL per test run (the one `DATABASE_URL`
//! names, or a throwaway server from the system's binaries), a template
//! database migrated once, a fresh database cloned from it for every test,
//! and `spawn_app()`, which runs Lectern on port 0 against that database.

pub mod moto;
pub mod stripe;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use figment::providers::{Format, Toml};
use figment::Figment;
use lectern::config::{Environment, Settings, DEFAULT_TOML};
use lectern::startup::Application;
use lectern::telemetry;
use lectern_actors::content::demo::demo_files;
use lectern_actors::content::import::{import_bundle, parse_files};
use lectern_actors::content::markdown::MarkdownOptions;
use lectern_actors::store::embedded::EmbeddedPostgres;
use lectern_actors::store::{self, quote_ident, DbConfig, DbPool};
use lectern_actors::supervisor::RootSupervisor;
use tempfile::TempDir;
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

const TEMPLATE: &str = "lectern_test_template";
/// The migrated template with the demo content imported.
const DEMO_TEMPLATE: &str = "lectern_test_demo_template";

/// The PostgreSQL server this test run uses.
struct TestServer {
    /// Connection settings for the server's maintenance database.
    admin: DbConfig,
    _embedded: Option<EmbeddedPostgres>,
}

static SERVER: OnceLock<TestServer> = OnceLock::new();
/// The mail folders of the apps on each database: any node's Mailer may
/// deliver an email another node enqueued.
static MAIL_DIRS: std::sync::Mutex<std::collections::BTreeMap<String, Vec<PathBuf>>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());
static TEMPLATE_READY: OnceCell<()> = OnceCell::const_new();
static DEMO_TEMPLATE_READY: OnceCell<()> = OnceCell::const_new();

fn server() -> &'static TestServer {
    SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let mut admin = DbConfig::from_str(&url).expect("DATABASE_URL is not a PostgreSQL connection string");
            admin.dbname("postgres");
            TestServer {
                admin,
                _embedded: None,
            }
        }
        Err(_) => {
            // Under /tmp, so that the postgres user can reach it when we are root.
            let dir = PathBuf::from(format!("/tmp/lectern-tests-{}", std::process::id()));
            remove_stale_test_servers();
            let embedded = EmbeddedPostgres::start(&dir.join("data"), &dir.join("postgres.log"))
                .unwrap_or_else(|e| {
                    panic!("cannot start a throwaway PostgreSQL for the tests: {e}\nInstall PostgreSQL's server binaries or set DATABASE_URL.")
                });
            TestServer {
                admin: embedded.config("postgres"),
                _embedded: Some(embedded),
            }
        }
    })
}

/// Servers of earlier runs die with their test process; their directories stay.
fn remove_stale_test_servers() {
    let Ok(entries) = std::fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("lectern-tests-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

async fn admin_client() -> tokio_postgres::Client {
    let (client, connection) = server()
        .admin
        .connect(NoTls)
        .await
        .expect("cannot connect to the test PostgreSQL server");
    tokio::spawn(connection);
    client
}

async fn ensure_template() {
    TEMPLATE_READY
        .get_or_init(|| async {
            recreate(TEMPLATE, None).await;
            let pool = store::connect_pool(config_for(TEMPLATE), 1).expect("pool");
            store::migrate(&pool).await.expect("the migrations apply");
            pool.close();
        })
        .await;
}

async fn recreate(name: &str, template: Option<&str>) {
    let client = admin_client().await;
    let name = quote_ident(name);
    let create = match template {
        Some(template) => format!(
            "CREATE DATABASE {name} TEMPLATE {} STRATEGY FILE_COPY",
            quote_ident(template)
        ),
        None => format!("CREATE DATABASE {name}"),
    };
    for statement in [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), create] {
        client
            .batch_execute(&statement)
            .await
            .expect("cannot create a template database");
    }
}

async fn clone_of(template: &str) -> DbConfig {
    let name = format!("lectern_test_{}", uuid::Uuid::new_v4().simple());
    admin_client()
        .await
        .batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY",
            quote_ident(&name),
            quote_ident(template)
        ))
        .await
        .expect("cannot clone the template database");
    config_for(&name)
}

/// A fresh database, migrated, with no content; its connection settings.
pub async fn fresh_database() -> DbConfig {
    ensure_template().await;
    clone_of(TEMPLATE).await
}

/// A fresh database with the demo content.
pub async fn demo_database() -> DbConfig {
    ensure_template().await;
    DEMO_TEMPLATE_READY
        .get_or_init(|| async {
            recreate(DEMO_TEMPLATE, Some(TEMPLATE)).await;
            let pool = store::connect_pool(config_for(DEMO_TEMPLATE), 1).expect("pool");
            let bundle =
                parse_files(&demo_files(), MarkdownOptions::default()).expect("the demo content is valid");
            import_bundle(&pool, &bundle)
                .await
                .expect("the demo content imports");
            pool.close();
        })
        .await;
    clone_of(DEMO_TEMPLATE).await
}

/// Runs `sql` on the server's maintenance database (for what cannot be
/// done from inside the database it concerns).
pub async fn on_server(sql: &str) {
    admin_client()
        .await
        .batch_execute(sql)
        .await
        .expect("admin statement");
}

/// A database with nothing in it, not even migrations.
pub async fn empty_database() -> DbConfig {
    let name = format!("lectern_empty_{}", uuid::Uuid::new_v4().simple());
    admin_client()
        .await
        .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
        .await
        .expect("cannot create an empty database");
    config_for(&name)
}

fn config_for(database: &str) -> DbConfig {
    let mut config = server().admin.clone();
    config.dbname(database);
    config
}

/// A libpq `key=value` connection string for `config`, to hand to a child process.
pub fn conninfo(config: &DbConfig) -> String {
    let mut parts = Vec::new();
    for host in config.get_hosts() {
        match host {
            tokio_postgres::config::Host::Tcp(name) => parts.push(format!("host={name}")),
            tokio_postgres::config::Host::Unix(path) => parts.push(format!("host={}", path.display())),
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!("password={}", String::from_utf8_lossy(password)));
    }
    if let Some(dbname) = config.get_dbname() {
        parts.push(format!("dbname={dbname}"));
    }
    parts.join(" ")
}

/// Settings for a test: defaults, the test environment, a private data
/// directory, port 0, and `overrides` as `(key, value)` pairs.
pub fn test_settings(data_dir: &Path, overrides: &[(&str, &str)]) -> Settings {
    let data_dir = format!("{:?}", data_dir.display().to_string());
    let mut values: std::collections::BTreeMap<&str, &str> = [
        ("server.bind", "\"127.0.0.1:0\""),
        ("server.data_dir", data_dir.as_str()),
        ("server.workers", "2"),
        ("renderer.threads", "2"),
        ("log.level", "\"debug\""),
    ]
    .into_iter()
    .collect();
    values.extend(overrides.iter().copied());
    // Each value is a layer of its own from this code, as the environment
    // would give it (a secret may come from there, never from a file).
    let mut figment = Figment::new().merge(Toml::string(DEFAULT_TOML));
    for (key, value) in values {
        let parsed: toml::Table = toml::from_str(&format!("value = {value}")).expect("a TOML value");
        figment = figment.merge(figment::providers::Serialized::default(key, &parsed["value"]));
    }
    Settings::from_figment(&figment, Environment::Test).expect("test settings are valid")
}

/// Polls `check` every 100 ms until it answers `Some`, for at most `within`.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running Lectern with its own database.
pub struct TestApp {
    pub address: String,
    pub database: DbConfig,
    pub client: reqwest::Client,
    pub pool: DbPool,
    pub log_file: PathBuf,
    pub stopper: actix_web::dev::ServerHandle,
    actors: Arc<RootSupervisor>,
    _telemetry: telemetry::Telemetry,
    _data_dir: TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    spawn_app_on(fresh_database().await, overrides).await
}

/// Lectern on a database with the demo content.
pub async fn spawn_demo_app() -> TestApp {
    spawn_app_on(demo_database().await, &[]).await
}

/// Lectern on the given database (two apps on one database are two nodes).
pub async fn spawn_app_on(database: DbConfig, overrides: &[(&str, &str)]) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let settings = test_settings(data_dir.path(), overrides);
    let log_file = settings.log_file();
    let telemetry = telemetry::init(&settings).expect("log file");
    let pool = store::connect_pool(database.clone(), 2).expect("pool");
    let app = Application::build(
        settings,
        database.clone(),
        telemetry.log.clone(),
        telemetry.access_log(),
    )
    .await
    .expect("Lectern starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    MAIL_DIRS
        .lock()
        .unwrap()
        .entry(database.get_dbname().unwrap_or_default().to_owned())
        .or_default()
        .push(data_dir.path().join("mail"));
    let stopper = app.stopper();
    let actors = app.actors();
    actix_rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        database,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client"),
        pool,
        log_file,
        stopper,
        actors,
        _telemetry: telemetry,
        _data_dir: data_dir,
    }
}

/// A test's actors stop with the test: their arbiter threads would
/// otherwise outlive it and hold its database connections.
impl Drop for TestApp {
    fn drop(&mut self) {
        self.actors.stop_arbiters();
    }
}

impl TestApp {
    /// Makes this app's database unreachable: no new connections, and the
    /// open ones cut, as when the database server goes away.
    pub async fn cut_off_database(&self) {
        let database = self.database_name();
        on_server(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            quote_ident(&database)
        ))
        .await;
        on_server(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
        ))
        .await;
    }

    /// Lets connections to this app's database in again.
    pub async fn restore_database(&self) {
        let database = self.database_name();
        on_server(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            quote_ident(&database)
        ))
        .await;
    }

    fn database_name(&self) -> String {
        self.database
            .get_dbname()
            .expect("test databases are named")
            .to_owned()
    }

    /// The app's supervision tree (to send its actors a message).
    pub fn actors(&self) -> &Arc<RootSupervisor> {
        &self.actors
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }

    /// The log lines for `request_id`, waiting up to 5 s for the
    /// asynchronous writer to reach the request's last line (its access or
    /// failure line, which carries the status).
    pub async fn log_lines_for(&self, request_id: &str) -> Vec<serde_json::Value> {
        wait_for_log_lines(&self.log_file, request_id).await
    }
}

pub async fn wait_for_log_lines(file: &Path, request_id: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["request_id"] == request_id)
            .collect();
        if lines.iter().any(|l| !l["status"].is_null()) || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `lectern` binary, run in an empty working directory (so that no
/// `config/` of the repository applies) with a private data directory.
pub struct LecternProcess {
    pub child: Child,
    pub address: String,
    _data_dir: Arc<TempDir>,
}

pub fn lectern_command(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lectern"));
    command
        .current_dir(data_dir)
        .env_remove("DATABASE_URL")
        .env_remove("LECTERN_ENV")
        .env("LECTERN_ENV", "test")
        .env("LECTERN__SERVER__BIND", "127.0.0.1:0")
        .env("LECTERN__SERVER__DATA_DIR", data_dir)
        .env("LECTERN__SERVER__WORKERS", "1")
        .env("LECTERN__RENDERER__THREADS", "1");
    command
}

impl LecternProcess {
    /// Starts `lectern serve` and waits for the line that gives its address.
    pub fn start(data_dir: Arc<TempDir>, database: Option<&DbConfig>) -> LecternProcess {
        LecternProcess::start_with_env(data_dir, database, &[])
    }

    /// `start` with more environment variables (`LECTERN__…` settings).
    pub fn start_with_env(
        data_dir: Arc<TempDir>,
        database: Option<&DbConfig>,
        env: &[(&str, &str)],
    ) -> LecternProcess {
        use std::io::{BufRead, BufReader};
        let mut command = lectern_command(data_dir.path());
        command.envs(env.iter().copied());
        if let Some(database) = database {
            command.env("DATABASE_URL", conninfo(database));
        }
        let mut child = command
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the lectern binary runs");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let address = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(address) = line.strip_prefix("Lectern listening on ") {
                        break address.to_owned();
                    }
                }
                _ => {
                    let status = child.wait().expect("wait");
                    panic!("lectern exited before listening: {status}");
                }
            }
        };
        LecternProcess {
            child,
            address,
            _data_dir: data_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal sent");
    }

    /// Waits up to `within` for the process to exit; its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for LecternProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PIDs of PostgreSQL processes whose command line names `data_dir`.
pub fn postgres_processes_for(data_dir: &Path) -> Vec<u32> {
    let needle = data_dir.display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let text = String::from_utf8_lossy(&c).replace('\0', " ");
                    text.contains("postgres") && text.contains(&needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

/// An email in the outbox: its id, message, recipient and template data.
#[derive(Debug, Clone)]
pub struct OutboxEmail {
    pub id: i64,
    pub message: String,
    pub recipient: String,
    pub data: serde_json::Value,
}

/// The body of the MIME part whose `Content-Type` is `content_type`,
/// decoded from its transfer encoding.
pub fn mime_part(eml: &str, content_type: &str) -> String {
    let start = eml
        .find(&format!("Content-Type: {content_type}"))
        .unwrap_or_else(|| panic!("no {content_type} part in:\n{eml}"));
    let part = &eml[start..];
    let (headers, rest) = part.split_once("\r\n\r\n").unwrap();
    let body = &rest[..rest.find("\r\n--").unwrap()];
    let encoding = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Transfer-Encoding: "))
        .unwrap_or("7bit");
    match encoding.trim() {
        "base64" => {
            use base64::Engine;
            let compact: String = body.split_whitespace().collect();
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(compact).unwrap()).unwrap()
        }
        "quoted-printable" => decode_quoted_printable(body),
        _ => body.replace("\r\n", "\n"),
    }
}

fn decode_quoted_printable(body: &str) -> String {
    let joined = body.replace("=\r\n", "").replace("\r\n", "\n");
    let mut bytes = Vec::new();
    let mut rest = joined.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'=' && tail.len() >= 2 {
            bytes.push(u8::from_str_radix(std::str::from_utf8(&tail[..2]).unwrap(), 16).unwrap());
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).unwrap()
}

/// The first link to this site in `text`.
fn site_link(text: &str, site: &str) -> Option<String> {
    let start = text.find(&format!("{site}/"))?;
    let link = &text[start..];
    let end = link
        .find(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .unwrap_or(link.len());
    Some(link[..end].to_owned())
}

impl TestApp {
    /// Every email in the outbox, oldest first.
    pub async fn outbox(&self) -> Vec<OutboxEmail> {
        let client = self.pool.get().await.unwrap();
        client
            .query(
                "SELECT id, message, recipient, data FROM email_outbox ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| OutboxEmail {
                id: row.get(0),
                message: row.get(1),
                recipient: row.get(2),
                data: row.get(3),
            })
            .collect()
    }

    /// `email` as its recipient gets it: waits until the Mailer delivered
    /// it (as an .eml file, 15 s at most) and reads the file.
    pub async fn eml_of(&self, email: &OutboxEmail) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        let file = loop {
            let client = self.pool.get().await.unwrap();
            let row = client
                .query_one(
                    "SELECT status, provider_id FROM email_outbox WHERE id = $1",
                    &[&email.id],
                )
                .await
                .unwrap();
            match (row.get::<_, &str>(0), row.get::<_, Option<String>>(1)) {
                ("sent", Some(name)) => {
                    let dirs = MAIL_DIRS.lock().unwrap()[&self.database_name()].clone();
                    let found = dirs.iter().map(|dir| dir.join(&name)).find(|file| file.exists());
                    break found.unwrap_or_else(|| panic!("{name} is in none of {dirs:?}"));
                }
                (status, _) => assert!(
                    Instant::now() < deadline,
                    "email {} is still {status} after 15 s",
                    email.id
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        std::fs::read_to_string(&file).unwrap()
    }

    /// The link in `email` as its recipient reads it: the link to this site
    /// in its text part, as a path.
    pub async fn link_in(&self, email: &OutboxEmail) -> String {
        let eml = self.eml_of(email).await;
        let text = mime_part(&eml, "text/plain");
        let link = site_link(&text, &self.address)
            .unwrap_or_else(|| panic!("no link to {} in the email:\n{text}", self.address));
        link[self.address.len()..].to_owned()
    }

    /// The newest emailed link to `recipient`, as a path.
    pub async fn last_link_to(&self, recipient: &str) -> String {
        let email = self.last_email_to(recipient).await;
        self.link_in(&email).await
    }

    /// The mail folders of the apps on this app's database.
    pub fn mail_dirs(&self) -> Vec<PathBuf> {
        MAIL_DIRS.lock().unwrap()[&self.database_name()].clone()
    }

    /// Runs the Housekeeper's purges now.
    pub async fn sweep(&self) {
        self.actors
            .housekeeper
            .send(lectern_actors::housekeeping::Sweep)
            .await
            .expect("the Housekeeper answers")
            .expect("the sweep does not panic");
    }

    /// The newest email to `recipient`.
    pub async fn last_email_to(&self, recipient: &str) -> OutboxEmail {
        self.outbox()
            .await
            .into_iter()
            .rev()
            .find(|e| e.recipient == recipient)
            .unwrap_or_else(|| panic!("no email to {recipient} in the outbox"))
    }
}

/// A response read off the wire: the status line and headers as sent, and
/// every byte that followed them until the server closed the connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Header names in lower case, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` with `headers` over a plain TCP connection, asking
/// the server to close it, and reads everything until it does. An HTTP
/// client stops reading after the headers of a HEAD or 304 answer; this
/// shows the bytes a server sent there.
pub async fn raw_request(app: &TestApp, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let authority = app.address.strip_prefix("http://").expect("an http address");
    let mut stream = tokio::net::TcpStream::connect(authority).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request written");
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut bytes))
        .await
        .expect("the server closes the connection within 10 s")
        .expect("response read");
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(&bytes)));
    let head = std::str::from_utf8(&bytes[..end]).expect("headers are ASCII");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .map(|l| {
            let (name, value) = l.split_once(':').expect("a header line");
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    RawResponse {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
    }
}
