//! Starting and stopping Lectern: the database (embedded or configured),
//! migrations, the actors, the HTTP server, signals, and the order in which
//! all of it shuts down. The one-off commands are in `commands`.

use std::sync::Arc;
use std::time::Duration;

use actix_http::error::DispatchError;
use actix_http::HttpService;
use actix_service::{fn_service, map_config, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use actix_web::{middleware::from_fn, web, App};
use lectern_actors::accounts::{Accounts, AccountsConfig, AccountsError, PasswordPolicy};
use lectern_actors::backup::{BackupError, Backups};
use lectern_actors::billing::actor::BillingSchedule;
use lectern_actors::billing::{Billing, BillingConfig, BillingError, StripeConfig};
use lectern_actors::cache::PageTable;
use lectern_actors::content::export::ExportError;
use lectern_actors::content::import::ImportError;
use lectern_actors::content::{self};
use lectern_actors::events::Event;
use lectern_actors::mail::sns::{HttpClientError, SnsReceiver};
use lectern_actors::mail::EmailAddress;
use lectern_actors::mail::{BackendConfig, MailerConfig};
use lectern_actors::store::embedded::{EmbeddedError, EmbeddedPostgres};
use lectern_actors::store::{self, DbConfig, DbPool, StoreError};
use lectern_actors::supervisor::restarts::RestartPolicy;
use lectern_actors::supervisor::{RootSupervisor, StartError, SupervisorConfig};
use serde_json::json;
use slog::{error, info, Logger};
use tokio::signal::unix::{signal, SignalKind};

use crate::commands::import_demo;
use crate::config::{MailBackend, Settings};
use crate::http::accounts::SiteLinks;
use crate::http::connection::HeadDeadline;
use crate::http::metrics::HttpMetrics;
use crate::http::middleware::{around_request, Draining, RequestContext};
use crate::http::{self, AppState};
use crate::telemetry::{self, AccessLog, LogReopener};

/// The administrator a new development database gets with its demo content.
const DEMO_ADMIN: &str = "admin@lectern.localhost";

/// The name of the database Lectern creates in its embedded server.
pub(crate) const EMBEDDED_DATABASE: &str = "lectern";

/// How often the Housekeeper purges stale accounts, links and emails.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(600);

/// Connections waiting to be accepted: a crowd connecting at once must not
/// overflow the queue (std's own listeners use 128); the kernel caps this
/// at net.core.somaxconn.
const LISTEN_BACKLOG: i32 = 4096;

/// On SIGTERM, how long the accept thread has to stop accepting before the
/// workers are told to stop (see `Shutdown::graceful`).
const ACCEPT_SETTLE: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the log file: {0}")]
    Log(std::io::Error),
    #[error("embedded database: {0}")]
    Embedded(#[from] EmbeddedError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the actors: {0}")]
    Actors(#[from] StartError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Server(std::io::Error),
    #[error("socket activation (LISTEN_FDS): {0}")]
    SocketActivation(String),
    #[error("escalation: {0}")]
    Escalated(String),
    #[error("{0}")]
    Import(#[from] ImportError),
    #[error("{0}")]
    Export(#[from] ExportError),
    #[error("accounts: {0}")]
    Accounts(#[from] AccountsError),
    #[error("{0}")]
    Sns(#[from] HttpClientError),
    #[error("billing: {0}")]
    Billing(#[from] BillingError),
    #[error(
        "the data directory {dir} is in use by another `lectern serve` (pid {pid}): \
         stop that one, or give this one its own server.data_dir"
    )]
    DataDirInUse { dir: String, pid: String },
    #[error("cannot lock the data directory: {path}: {source}")]
    DataDirLock { path: String, source: std::io::Error },
    #[error("{0}")]
    Backup(#[from] BackupError),
}

impl StartupError {
    /// The exit status: 2 when what was asked for is refused (bad usage or
    /// configuration), 1 when it failed while running.
    pub fn exit_status(&self) -> u8 {
        match self {
            StartupError::Backup(e) if e.is_usage() => 2,
            StartupError::Export(e) if e.is_usage() => 2,
            _ => 1,
        }
    }
}

/// Lectern's HTTP server and actors, bound and ready to run.
pub struct Application {
    address: std::net::SocketAddr,
    socket: SocketSource,
    server: actix_web::dev::Server,
    draining: Draining,
    drain: Duration,
    actors: Arc<RootSupervisor>,
    log: Logger,
}

impl Application {
    /// Binds the listener (port 0 picks a free port), connects, migrates,
    /// starts the actors. Must run inside an actix `System`.
    pub async fn build(
        settings: Settings,
        database: DbConfig,
        log: Logger,
        access: AccessLog,
    ) -> Result<Application, StartupError> {
        Application::build_on(None, settings, database, log, access).await
    }

    /// `build`, on the listening socket systemd passed (`inherited_listener`)
    /// when there is one: then `server.bind` is not bound, and the address
    /// is the socket's own.
    pub async fn build_on(
        inherited: Option<std::net::TcpListener>,
        mut settings: Settings,
        database: DbConfig,
        log: Logger,
        access: AccessLog,
    ) -> Result<Application, StartupError> {
        let (listener, socket) = match inherited {
            Some(listener) => (listener, SocketSource::Systemd),
            None => (listen(settings.server.bind)?, SocketSource::Bound),
        };
        let address = listener.local_addr().map_err(StartupError::Server)?;
        // With port 0, the public URL derived from the address needs the real port.
        settings.server.bind = address;
        let public_url = settings.public_url();
        let pool_size = match settings.database.pool_size {
            0 => 2 * threads_or_cores(0),
            size => size,
        };
        let pool = store::connect_pool(database.clone(), pool_size)?;
        let report = store::migrate(&pool).await?;
        for migration in &report.applied {
            info!(log, "migration applied"; "migration" => migration);
        }
        let accounts = accounts_context(&settings, pool.clone(), &public_url, &log);
        if settings.content.demo_when_empty && !content::has_content(&pool).await? {
            let report = import_demo(&pool, &settings).await?;
            info!(log, "the database had no content: demo content imported"; "items" => report.changed.len());
            let admin =
                EmailAddress::parse(DEMO_ADMIN).map_err(|_| AccountsError::StoredValue(DEMO_ADMIN.into()))?;
            let link = accounts.create_admin(&admin).await?;
            info!(log, "demo administrator: log in once with this link (valid for 24 hours)";
                "email" => DEMO_ADMIN, "link" => link);
        }
        let pages = PageTable::new(settings.cache.capacity_mb * 1024 * 1024);
        let billing = Arc::new(billing_context(&settings, pool.clone(), &public_url, &log)?);
        let backups = Arc::new(Backups::new(
            pool.clone(),
            database.clone(),
            settings.backup_storage()?,
        ));

        let actors = Arc::new(RootSupervisor::start(
            &SupervisorConfig {
                policy: RestartPolicy {
                    max_restarts: settings.supervisor.max_restarts,
                    within: Duration::from_secs(settings.supervisor.within_secs),
                },
                render_threads: threads_or_cores(settings.renderer.threads),
                live_templates: settings.renderer.live_templates,
                schedule_check: Duration::from_secs(settings.cache.schedule_check_secs),
                events_flush: Duration::from_secs(settings.log.events_flush_secs),
                page_view_buffer: settings.log.page_view_buffer,
                mail: mailer_config(&settings, &public_url),
                housekeeping_every: HOUSEKEEPING_EVERY,
                keep_mail: Duration::from_secs(u64::from(settings.mail.keep_days) * 86_400),
                billing: BillingSchedule {
                    reconcile_every: Duration::from_secs(
                        u64::from(settings.billing.reconcile_every_hours) * 3600,
                    ),
                    node: node_name(),
                },
                backup: settings.backup_plan(),
                alerts: settings.alerts_config(),
            },
            pool.clone(),
            database,
            pages,
            Arc::clone(&billing),
            backups,
            log.clone(),
        )?);

        let state = AppState {
            sns: SnsReceiver::new(settings.sns_config())?,
            settings: Arc::new(settings),
            public_url,
            pool,
            accounts,
            billing,
            actors: Arc::clone(&actors),
            metrics: Arc::new(HttpMetrics::new(Arc::clone(&actors.route_times))),
            log: log.clone(),
        };
        let drain = Duration::from_secs(state.settings.server.drain_secs);
        let draining = Draining::default();
        let server = http_server(state, listener, access, draining.clone())?;
        actors.record(Event::new(
            "server.started",
            None,
            json!({ "version": env!("CARGO_PKG_VERSION"), "address": address.to_string() }),
        ));
        Ok(Application {
            address,
            socket,
            server,
            draining,
            drain,
            actors,
            log,
        })
    }

    /// The address the server listens on (with the real port when 0 was asked for).
    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Where the listening socket came from.
    pub fn socket_source(&self) -> SocketSource {
        self.socket
    }

    /// The supervision tree (tests stop its actors when they end).
    pub fn actors(&self) -> Arc<RootSupervisor> {
        Arc::clone(&self.actors)
    }

    /// Stops the server gracefully, as SIGTERM does (`graceful = false` drops
    /// requests in flight, as a second signal or Ctrl-C does).
    pub fn stopper(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// How the signal handlers stop the server: with a drain first, on SIGTERM.
    pub fn shutdown(&self) -> Shutdown {
        Shutdown {
            server: self.server.handle(),
            draining: self.draining.clone(),
            drain: self.drain,
            log: self.log.clone(),
        }
    }

    /// Serves until the server is stopped or the supervision tree escalates;
    /// then writes out the EventLog and stops the actors.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let handle = self.server.handle();
        let outcome = tokio::select! {
            served = self.server => served.map_err(StartupError::Server),
            reason = self.actors.escalated() => {
                error!(self.log, "stopping: the supervision tree escalated"; "reason" => &reason);
                self.actors.alert_escalation(&reason).await;
                handle.stop(true).await;
                Err(StartupError::Escalated(reason))
            }
        };
        self.actors.shutdown().await;
        info!(self.log, "stopped");
        outcome
    }
}

/// Stops the HTTP server: gracefully, as SIGTERM does, or at once.
#[derive(Clone)]
pub struct Shutdown {
    server: actix_web::dev::ServerHandle,
    draining: Draining,
    drain: Duration,
    log: Logger,
}

impl Shutdown {
    /// SIGTERM's stop, in three steps.
    ///
    /// 1. The drain (`server.drain_secs`): Lectern goes on accepting and
    ///    serving, but every response closes its connection (see
    ///    `Draining`). actix-http's graceful stop closes idle keep-alive
    ///    connections at once, and a request a client sends on one just
    ///    then fails; so first each busy keep-alive connection gets one
    ///    answer with `Connection: close` and its client sends its next
    ///    request on a new connection. Idle ones that send nothing during
    ///    the drain are closed at the stop all the same.
    /// 2. Stop accepting, and wait `ACCEPT_SETTLE`: actix-server drops the
    ///    connections its accept thread has handed to a worker that has
    ///    not started them yet when the workers are told to stop, so the
    ///    accept thread must have stopped and the workers started what it
    ///    accepted (a client must not see a connection accepted and closed
    ///    unanswered). What is not accepted waits in the socket's backlog,
    ///    for the next Lectern on a socket systemd holds.
    /// 3. Stop the workers gracefully: requests in flight finish, within
    ///    `server.shutdown_timeout_secs`.
    pub async fn graceful(&self) {
        // Set before the line is logged: once it is out, responses close.
        if !self.drain.is_zero() {
            self.draining.start();
        }
        info!(self.log, "stopping"; "graceful" => true, "drain_secs" => self.drain.as_secs());
        actix_rt::time::sleep(self.drain).await;
        self.server.pause().await;
        actix_rt::time::sleep(ACCEPT_SETTLE).await;
        self.server.stop(true).await
    }

    /// Ctrl-C's stop, or a second signal's: no drain, and requests in
    /// flight are dropped.
    pub async fn immediate(&self) {
        info!(self.log, "stopping"; "graceful" => false);
        self.server.stop(false).await
    }
}

/// The accounts context, with the web layer's links.
pub fn accounts_context(settings: &Settings, pool: DbPool, public_url: &str, log: &Logger) -> Accounts {
    let accounts = &settings.accounts;
    Accounts::new(
        pool,
        AccountsConfig {
            session_days: accounts.session_days,
            password: PasswordPolicy {
                min_chars: accounts.min_password_chars,
                max_chars: accounts.max_password_chars,
            },
            concurrent_hashes: accounts.concurrent_hashes,
            emails_per_address_per_day: accounts.emails_per_address_per_day,
        },
        Arc::new(SiteLinks {
            public_url: public_url.to_owned(),
        }),
        log.clone(),
    )
}

/// The billing context, with the web layer's URLs and Stripe when a key is set.
pub fn billing_context(
    settings: &Settings,
    pool: DbPool,
    public_url: &str,
    log: &Logger,
) -> Result<Billing, StartupError> {
    let stripe = settings.stripe.secret_key.as_ref().map(|key| StripeConfig {
        api_base: settings.stripe.api_base.clone(),
        secret_key: key.expose().to_owned(),
        timeout: Duration::from_secs(settings.stripe.timeout_secs),
    });
    let config = BillingConfig {
        plans: settings.plans(),
        grace: time::Duration::days(i64::from(settings.billing.grace_days)),
        stripe,
        urls: crate::http::billing::urls(public_url),
    };
    Ok(Billing::new(pool, config, log.clone())?)
}

/// This process's name in the table of scheduled runs: the host and pid.
fn node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

/// The Mailer's part of the configuration.
fn mailer_config(settings: &Settings, public_url: &str) -> MailerConfig {
    let mail = &settings.mail;
    MailerConfig {
        backend: match mail.backend {
            MailBackend::Ses => BackendConfig::Ses {
                endpoint: mail.ses.endpoint.clone(),
                region: mail.ses.region.clone(),
            },
            MailBackend::File => BackendConfig::File {
                dir: settings.data_path("mail".as_ref()),
            },
        },
        from: mail.from.clone(),
        site_name: "Lectern".to_owned(),
        site_url: public_url.to_owned(),
        max_per_second: mail.max_per_second,
        concurrency: mail.concurrency,
        poll: Duration::from_secs(mail.poll_secs),
        max_attempts: mail.max_attempts,
        retry_base: Duration::from_secs(mail.retry_base_secs),
    }
}

/// `configured`, or when it is 0 the number of CPU cores this process may
/// run on (a `taskset` or systemd CPUAffinity counts).
fn threads_or_cores(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A listening socket on `address` with a deep accept queue.
fn listen(address: std::net::SocketAddr) -> Result<std::net::TcpListener, StartupError> {
    use socket2::{Domain, Socket, Type};
    let bind = || -> std::io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&address.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(socket.into())
    };
    bind().map_err(|source| StartupError::Bind { address, source })
}

/// Where the listening socket came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketSource {
    /// Bound by Lectern on `server.bind`.
    Bound,
    /// Passed by systemd (or another socket holder) as fd 3: sd_listen_fds(3).
    Systemd,
}

impl SocketSource {
    pub fn describe(self) -> &'static str {
        match self {
            SocketSource::Bound => "bound on server.bind",
            SocketSource::Systemd => "passed by systemd (LISTEN_FDS, fd 3)",
        }
    }
}

/// What the socket-activation variables say.
#[derive(Debug)]
pub enum Activation {
    /// No `LISTEN_FDS`: Lectern binds `server.bind` itself.
    None,
    /// `LISTEN_PID` names another process: the variables were inherited
    /// from a socket-activated parent and are not ours (sd_listen_fds(3)).
    ForAnother { pid: String },
    /// The listening socket passed to this process.
    Passed(std::net::TcpListener),
}

/// The first descriptor systemd passes (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: std::os::fd::RawFd = 3;

/// The listening socket passed by socket activation, as sd_listen_fds(3)
/// defines it: `LISTEN_FDS` descriptors from fd 3 on, meant for the process
/// `LISTEN_PID`. Lectern takes exactly one, a listening TCP socket. The
/// variables are cleared whatever they say, so that no process Lectern
/// starts takes them for its own. Call it first thing, before this process
/// opens any file or starts a thread: fd 3 must still be the one passed,
/// and the environment is changed.
pub fn inherited_listener() -> Result<Activation, StartupError> {
    use socket2::{Socket, Type};
    use std::os::fd::FromRawFd;

    let Some(fds) = std::env::var_os("LISTEN_FDS") else {
        return Ok(Activation::None);
    };
    let pid = std::env::var_os("LISTEN_PID");
    for name in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let bad = |why: String| StartupError::SocketActivation(why);
    let pid = pid.ok_or_else(|| bad("LISTEN_FDS is set but LISTEN_PID is not".into()))?;
    let pid = pid.to_string_lossy().into_owned();
    let ours = pid
        .parse::<u32>()
        .map_err(|_| bad(format!("LISTEN_PID={pid:?} is not a process id")))?;
    if ours != std::process::id() {
        return Ok(Activation::ForAnother { pid });
    }
    let fds = fds.to_string_lossy();
    match fds.parse::<u32>() {
        Ok(1) => {}
        Ok(n) => {
            return Err(bad(format!(
                "LISTEN_FDS={n}: Lectern takes exactly one socket (one ListenStream= in lectern.socket)"
            )))
        }
        Err(_) => return Err(bad(format!("LISTEN_FDS={fds:?} is not a number of sockets"))),
    }
    let stat = nix::sys::stat::fstat(LISTEN_FDS_START)
        .map_err(|e| bad(format!("fd {LISTEN_FDS_START} was not passed: {e}")))?;
    let kind = nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode) & nix::sys::stat::SFlag::S_IFMT;
    if kind != nix::sys::stat::SFlag::S_IFSOCK {
        return Err(bad(format!("fd {LISTEN_FDS_START} is not a socket")));
    }
    // SAFETY: fd 3 is open and a socket (checked just above), and nothing in
    // this process owns it: sd_listen_fds(3) hands it to this process (the
    // LISTEN_PID check), and this runs before Lectern opens anything.
    #[allow(unsafe_code)]
    let socket = unsafe { Socket::from_raw_fd(LISTEN_FDS_START) };
    let checked = (|| -> std::io::Result<Result<(), String>> {
        if socket.r#type()? != Type::STREAM {
            return Ok(Err("not a stream socket (ListenStream=)".into()));
        }
        if !socket.is_listener()? {
            return Ok(Err("not listening".into()));
        }
        if socket.local_addr()?.as_socket().is_none() {
            return Ok(Err(
                "not a TCP socket (an IP address and port in ListenStream=)".into()
            ));
        }
        // Not to be inherited by the processes Lectern starts.
        socket.set_cloexec(true)?;
        Ok(Ok(()))
    })();
    match checked {
        Ok(Ok(())) => Ok(Activation::Passed(socket.into())),
        Ok(Err(why)) => Err(bad(format!("fd {LISTEN_FDS_START} is {why}"))),
        Err(e) => Err(bad(format!("fd {LISTEN_FDS_START}: {e}"))),
    }
}

/// Configures the HTTP server on `listener`.
fn http_server(
    state: AppState,
    listener: std::net::TcpListener,
    access: AccessLog,
    draining: Draining,
) -> Result<actix_web::dev::Server, StartupError> {
    let settings = Arc::clone(&state.settings);
    let request_context = RequestContext::new(
        &settings,
        Arc::clone(&state.actors.pages),
        Arc::clone(&state.actors.page_views),
        Arc::clone(&state.metrics),
        access,
        state.log.clone(),
        draining,
    );
    let max_body = settings.server.max_body_bytes;
    let head_timeout = Duration::from_secs(settings.server.request_head_timeout_secs);
    let keep_alive = Duration::from_secs(settings.server.keep_alive_secs);
    let state = web::Data::new(state);
    let app = move || {
        let request_context = Arc::clone(&request_context);
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(max_body))
            .app_data(web::JsonConfig::default().limit(max_body))
            .wrap(from_fn(move |req, next| {
                around_request(Arc::clone(&request_context), req, next)
            }))
            .configure(http::routes)
    };
    // actix-web's `HttpServer` with each connection's stream wrapped in a
    // `HeadDeadline`, which `HttpServer` has no place for.
    let server = actix_server::Server::build()
        .workers(threads_or_cores(settings.server.workers))
        .max_concurrent_connections(50_000)
        .shutdown_timeout(settings.server.shutdown_timeout_secs)
        // Lectern handles signals itself (see `serve`), so that shutdown is ordered.
        .disable_signals()
        .listen("http", listener, move || {
            let http = HttpService::build()
                .keep_alive(keep_alive)
                .client_request_timeout(head_timeout)
                .client_disconnect_timeout(Duration::from_secs(1))
                // Lectern reads neither `connection_info()` nor the
                // `AppConfig`'s host and address (links use server.public_url).
                .h1(map_config(app(), |_| AppConfig::default()));
            fn_service(move |stream: TcpStream| {
                let stream = HeadDeadline::new(stream, head_timeout);
                let peer = stream.peer_addr();
                std::future::ready(Ok::<_, DispatchError>((stream, peer)))
            })
            .and_then(http)
        })
        .map_err(StartupError::Server)?;
    Ok(server.run())
}

/// The database to use: the configured one, or a private embedded server.
pub(crate) fn open_database(
    settings: &Settings,
    log: &Logger,
) -> Result<(DbConfig, Option<EmbeddedPostgres>), StartupError> {
    match &settings.database.url {
        Some(url) => Ok((url.config().clone(), None)),
        None => {
            let data_dir = settings.data_path("postgres".as_ref());
            let server =
                EmbeddedPostgres::start(&data_dir, &settings.data_path("log/postgres.log".as_ref()))?;
            if server.is_owned() {
                info!(log, "embedded PostgreSQL started"; "data_dir" => %server.data_dir().display(), "pid" => server.pid());
            } else {
                info!(log, "attached to the embedded PostgreSQL a running Lectern started";
                    "data_dir" => %server.data_dir().display(), "pid" => server.pid());
            }
            Ok((server.config(EMBEDDED_DATABASE), Some(server)))
        }
    }
}

pub(crate) async fn ensure_embedded_database(
    embedded: &Option<EmbeddedPostgres>,
) -> Result<(), StartupError> {
    if let Some(server) = embedded {
        store::ensure_database(&server.config("postgres"), EMBEDDED_DATABASE).await?;
    }
    Ok(())
}

/// `lectern serve`: runs until SIGTERM (graceful: requests in flight finish)
/// or SIGINT (Ctrl-C: immediate), or until the supervision tree escalates.
pub fn serve(settings: Settings) -> Result<(), StartupError> {
    // First: fd 3 must still be the socket systemd passed.
    let activation = inherited_listener()?;
    let _data_dir = lock_data_dir(&settings.server.data_dir)?;
    let telemetry = telemetry::init(&settings).map_err(StartupError::Log)?;
    let log = telemetry.log.clone();
    let reopener = telemetry.reopener();
    let inherited = match activation {
        Activation::Passed(listener) => Some(listener),
        Activation::ForAnother { pid } => {
            info!(log, "LISTEN_FDS is for another process (LISTEN_PID): binding server.bind";
                "listen_pid" => pid);
            None
        }
        Activation::None => None,
    };
    let (database, mut embedded) = open_database(&settings, &log)?;
    // While Lectern serves, a server of its own that dies is started again.
    if let Some(server) = embedded.as_mut() {
        server.supervise(log.clone());
    }

    let served = actix_rt::System::new().block_on(async {
        ensure_embedded_database(&embedded).await?;
        let app =
            Application::build_on(inherited, settings, database, log.clone(), telemetry.access_log()).await?;
        spawn_signal_handlers(app.shutdown(), reopener, log.clone());
        // Tests and scripts read this line to learn the port.
        println!("Lectern listening on http://{}", app.address());
        info!(log, "listening"; "address" => %app.address(), "socket" => app.socket_source().describe());
        app.run_until_stopped().await
    });
    if let Err(e) = &served {
        error!(log, "Lectern stopped with an error"; "error" => %e);
    }
    if let Some(server) = embedded.as_mut().filter(|server| server.is_owned()) {
        server.stop();
        info!(log, "embedded PostgreSQL stopped");
    }
    drop(telemetry);
    served
}

/// `lectern serve`'s claim on its data directory, held while it runs (the
/// kernel lets go of it when the process ends, however it ends): a second
/// server on the same directory is refused at once, naming the first.
/// One-off commands take no claim: they attach to the running server's
/// embedded PostgreSQL.
struct DataDirLock {
    _file: nix::fcntl::Flock<std::fs::File>,
}

fn lock_data_dir(dir: &std::path::Path) -> Result<DataDirLock, StartupError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let path = dir.join("lectern.pid");
    let failed = |source: std::io::Error| StartupError::DataDirLock {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(failed)?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut file) => {
            file.set_len(0).map_err(failed)?;
            writeln!(*file, "{}", std::process::id()).map_err(failed)?;
            Ok(DataDirLock { _file: file })
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(StartupError::DataDirInUse {
            dir: dir.display().to_string(),
            pid: std::fs::read_to_string(&path)
                .map(|pid| pid.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
        }),
        Err((_, errno)) => Err(failed(errno.into())),
    }
}

/// Installs the handlers before it returns, so that a signal sent once the
/// "listening" line is out is Lectern's to handle, then waits for them on a
/// task. SIGTERM stops gracefully (`Shutdown::graceful`: the drain, then
/// requests in flight finish); SIGINT (Ctrl-C), or any second signal, stops
/// at once, without the drain: in development nobody waits for it, and a
/// second signal means "now".
fn spawn_signal_handlers(shutdown: Shutdown, reopener: LogReopener, log: Logger) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!(log, "cannot install signal handlers");
        return;
    };
    actix_rt::spawn(async move {
        let mut stopping = false;
        loop {
            let graceful = tokio::select! {
                _ = term.recv() => true,
                _ = int.recv() => false,
                _ = hup.recv() => {
                    reopener.reopen();
                    info!(log, "SIGHUP: log file reopened");
                    continue;
                }
            };
            // A second signal while draining stops at once.
            let graceful = graceful && !stopping;
            stopping = true;
            let shutdown = shutdown.clone();
            actix_rt::spawn(async move {
                match graceful {
                    true => shutdown.graceful().await,
                    false => shutdown.immediate().await,
                }
            });
        }
    });
}
