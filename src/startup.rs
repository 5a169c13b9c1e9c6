//! Starting and stopping Lectern: the database (embedded or configured),
//! migrations, the actors, the HTTP server, signals, and the order in which
//! all of it shuts down.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{middleware::from_fn, web, App, HttpServer};
use lectern_actors::accounts::{self, AccountsError};
use lectern_actors::cache::PageTable;
use lectern_actors::content::demo::demo_files;
use lectern_actors::content::import::{import_bundle, import_dir, parse_files, ImportError, ImportReport};
use lectern_actors::content::{self};
use lectern_actors::events::Event;
use lectern_actors::mail::sns::{HttpClientError, SnsReceiver};
use lectern_actors::mail::EmailAddress;
use lectern_actors::mail::{BackendConfig, MailerConfig};
use lectern_actors::store::embedded::{EmbeddedError, EmbeddedPostgres};
use lectern_actors::store::{self, DbConfig, DbPool, StoreError};
use lectern_actors::supervision::RestartPolicy;
use lectern_actors::supervisor::{RootSupervisor, StartError, SupervisorConfig};
use serde_json::json;
use slog::{error, info, Logger};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{MailBackend, Settings};
use crate::http::middleware::{around_request, RequestContext};
use crate::http::{self, AppState};
use crate::telemetry::{self, AccessLog, LogReopener};

/// The administrator a new development database gets with its demo content.
const DEMO_ADMIN: &str = "admin@lectern.localhost";

/// The name of the database Lectern creates in its embedded server.
const EMBEDDED_DATABASE: &str = "lectern";

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
    #[error("escalation: {0}")]
    Escalated(String),
    #[error("{0}")]
    Import(#[from] ImportError),
    #[error("accounts: {0}")]
    Accounts(#[from] AccountsError),
    #[error("{0}")]
    Sns(#[from] HttpClientError),
}

/// Lectern's HTTP server and actors, bound and ready to run.
pub struct Application {
    address: std::net::SocketAddr,
    server: actix_web::dev::Server,
    actors: Arc<RootSupervisor>,
    log: Logger,
}

impl Application {
    /// Connects, migrates, starts the actors and binds the listener (port 0
    /// picks a free port). Must run inside an actix `System`.
    pub async fn build(
        settings: Settings,
        database: DbConfig,
        log: Logger,
        access: AccessLog,
    ) -> Result<Application, StartupError> {
        let pool_size = match settings.database.pool_size {
            0 => 2 * threads_or_cores(0),
            size => size,
        };
        let pool = store::connect_pool(database.clone(), pool_size)?;
        let report = store::migrate(&pool).await?;
        for migration in &report.applied {
            info!(log, "migration applied"; "migration" => migration);
        }
        if settings.content.demo_when_empty && !content::has_content(&pool).await? {
            let report = import_demo(&pool, &settings).await?;
            info!(log, "the database had no content: demo content imported"; "items" => report.changed.len());
            let admin = EmailAddress::parse(DEMO_ADMIN)
                .map_err(|_| AccountsError::StoredAddress(DEMO_ADMIN.into()))?;
            let link = accounts::create_admin(&pool, &admin, &settings.server.public_url).await?;
            info!(log, "demo administrator: log in once with this link (valid for 24 hours)";
                "email" => DEMO_ADMIN, "link" => link);
        }
        let pages = PageTable::new(settings.cache.capacity_mb * 1024 * 1024);

        let actors = Arc::new(RootSupervisor::start(
            &SupervisorConfig {
                policy: RestartPolicy {
                    max_restarts: settings.supervisor.max_restarts,
                    within: Duration::from_secs(settings.supervisor.within_secs),
                },
                render_threads: threads_or_cores(settings.renderer.threads),
                schedule_check: Duration::from_secs(settings.cache.schedule_check_secs),
                mail: mailer_config(&settings),
            },
            pool.clone(),
            database,
            pages,
            log.clone(),
        )?);

        let (server, address) = http_server(settings, pool, Arc::clone(&actors), log.clone(), access)?;
        actors.record(Event::new(
            "server.started",
            None,
            json!({ "version": env!("CARGO_PKG_VERSION"), "address": address.to_string() }),
        ));
        Ok(Application {
            address,
            server,
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

    /// The supervision tree (tests stop its actors when they end).
    pub fn actors(&self) -> Arc<RootSupervisor> {
        Arc::clone(&self.actors)
    }

    /// Stops the server gracefully, as SIGTERM does (`graceful = false` drops
    /// requests in flight, as a second signal or Ctrl-C does).
    pub fn stopper(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped or the supervision tree escalates;
    /// then writes out the EventLog and stops the actors.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let handle = self.server.handle();
        let outcome = tokio::select! {
            served = self.server => served.map_err(StartupError::Server),
            reason = self.actors.escalated() => {
                error!(self.log, "stopping: the supervision tree escalated"; "reason" => &reason);
                handle.stop(true).await;
                Err(StartupError::Escalated(reason))
            }
        };
        self.actors.shutdown().await;
        info!(self.log, "stopped");
        outcome
    }
}

/// A form that cannot be read gets a plain answer that says why.
fn form_error(error: actix_web::error::UrlencodedError, _: &actix_web::HttpRequest) -> actix_web::Error {
    use actix_web::ResponseError;
    let response = actix_web::HttpResponse::build(error.status_code())
        .content_type("text/plain; charset=utf-8")
        .body(format!("The form could not be read: {error}.\n"));
    actix_web::error::InternalError::from_response(error, response).into()
}

/// The Mailer's part of the configuration.
fn mailer_config(settings: &Settings) -> MailerConfig {
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
        site_url: settings.server.public_url.clone(),
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

/// Binds and configures the HTTP server; its address has the real port
/// when port 0 was asked for.
fn http_server(
    settings: Settings,
    pool: DbPool,
    actors: Arc<RootSupervisor>,
    log: Logger,
    access: AccessLog,
) -> Result<(actix_web::dev::Server, std::net::SocketAddr), StartupError> {
    let address = settings.server.bind;
    let request_context = RequestContext::new(&settings, access);
    let max_body = settings.server.max_body_bytes;
    let workers = threads_or_cores(settings.server.workers);
    let shutdown_timeout = settings.server.shutdown_timeout_secs;
    let keep_alive = std::time::Duration::from_secs(settings.server.keep_alive_secs);
    let sns = SnsReceiver::new(settings.sns_config())?;
    let state = web::Data::new(AppState {
        settings: Arc::new(settings),
        pool,
        actors,
        sns,
        log,
    });
    let server = HttpServer::new(move || {
        let request_context = Arc::clone(&request_context);
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(max_body))
            .app_data(
                web::FormConfig::default()
                    .limit(max_body)
                    .error_handler(form_error),
            )
            .app_data(web::JsonConfig::default().limit(max_body))
            .wrap(from_fn(move |req, next| {
                around_request(Arc::clone(&request_context), req, next)
            }))
            .configure(http::routes)
    })
    .workers(workers)
    .keep_alive(keep_alive)
    .max_connections(50_000)
    // A crowd connecting at once must not overflow the accept queue (std's
    // own listeners use 128); the kernel caps this at net.core.somaxconn.
    .backlog(4096)
    .shutdown_timeout(shutdown_timeout)
    // Lectern handles signals itself (see `serve`), so that shutdown is ordered.
    .disable_signals()
    .bind(address)
    .map_err(|source| StartupError::Bind { address, source })?;
    let bound = *server.addrs().first().ok_or_else(|| StartupError::Bind {
        address,
        source: std::io::Error::other("no address was bound"),
    })?;
    Ok((server.run(), bound))
}

/// The database to use: the configured one, or a private embedded server.
fn open_database(
    settings: &Settings,
    log: &Logger,
) -> Result<(DbConfig, Option<EmbeddedPostgres>), StartupError> {
    match &settings.database.url {
        Some(url) => Ok((url.config().clone(), None)),
        None => {
            let data_dir = settings.data_path("postgres".as_ref());
            let server =
                EmbeddedPostgres::start(&data_dir, &settings.data_path("log/postgres.log".as_ref()))?;
            info!(log, "embedded PostgreSQL started"; "data_dir" => %server.data_dir().display(), "pid" => server.pid());
            Ok((server.config(EMBEDDED_DATABASE), Some(server)))
        }
    }
}

async fn ensure_embedded_database(embedded: &Option<EmbeddedPostgres>) -> Result<(), StartupError> {
    if let Some(server) = embedded {
        store::ensure_database(&server.config("postgres"), EMBEDDED_DATABASE).await?;
    }
    Ok(())
}

/// `lectern serve`: runs until SIGTERM (graceful: requests in flight finish)
/// or SIGINT (Ctrl-C: immediate), or until the supervision tree escalates.
pub fn serve(settings: Settings) -> Result<(), StartupError> {
    let telemetry = telemetry::init(&settings).map_err(StartupError::Log)?;
    let log = telemetry.log.clone();
    let reopener = telemetry.reopener();
    let (database, mut embedded) = open_database(&settings, &log)?;

    let served = actix_rt::System::new().block_on(async {
        ensure_embedded_database(&embedded).await?;
        let app = Application::build(settings, database, log.clone(), telemetry.access_log()).await?;
        // Tests and scripts read this line to learn the port.
        println!("Lectern listening on http://{}", app.address());
        info!(log, "listening"; "address" => %app.address());
        spawn_signal_handlers(app.stopper(), reopener, log.clone());
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

fn spawn_signal_handlers(server: actix_web::dev::ServerHandle, reopener: LogReopener, log: Logger) {
    actix_rt::spawn(async move {
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            error!(log, "cannot install signal handlers");
            return;
        };
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
            info!(log, "stopping"; "graceful" => graceful);
            stopping = true;
            let server = server.clone();
            actix_rt::spawn(async move { server.stop(graceful).await });
        }
    });
}

async fn import_demo(pool: &DbPool, settings: &Settings) -> Result<ImportReport, StartupError> {
    let bundle = parse_files(&demo_files(), settings.markdown_options())?;
    Ok(import_bundle(pool, &bundle).await?)
}

/// Runs `work` against the configured (or embedded) database, migrated,
/// for a one-off command.
fn with_database<T, F, Fut>(settings: Settings, work: F) -> Result<T, StartupError>
where
    F: FnOnce(DbPool, Settings) -> Fut,
    Fut: std::future::Future<Output = Result<T, StartupError>>,
{
    let telemetry = telemetry::init(&settings).map_err(StartupError::Log)?;
    let (database, mut embedded) = open_database(&settings, &telemetry.log)?;
    let outcome = actix_rt::System::new().block_on(async {
        ensure_embedded_database(&embedded).await?;
        let pool = store::connect_pool(database, 2)?;
        work(pool, settings).await
    });
    if let Some(server) = embedded.as_mut() {
        server.stop();
    }
    outcome
}

/// `lectern content import DIR`: imports a folder of content, all or nothing.
pub fn import_content(settings: Settings, dir: std::path::PathBuf) -> Result<String, StartupError> {
    with_database(settings, |pool, settings| async move {
        store::migrate(&pool).await?;
        let report = import_dir(&pool, &dir, settings.markdown_options()).await?;
        Ok(report.to_string())
    })
}

/// `lectern seed --demo`: imports the built-in demo content.
pub fn seed_demo(settings: Settings) -> Result<String, StartupError> {
    with_database(settings, |pool, settings| async move {
        store::migrate(&pool).await?;
        Ok(import_demo(&pool, &settings).await?.to_string())
    })
}

/// `lectern user create-admin EMAIL`: an administrator and a one-time login link.
pub fn create_admin(settings: Settings, email: EmailAddress) -> Result<String, StartupError> {
    with_database(settings, |pool, settings| async move {
        store::migrate(&pool).await?;
        let link = accounts::create_admin(&pool, &email, &settings.server.public_url).await?;
        Ok(format!(
            "{email} is an administrator. Log in once with this link (valid for 24 hours):\n{link}"
        ))
    })
}

/// `lectern migrate`: applies pending migrations and says what it did.
pub fn migrate(settings: Settings) -> Result<String, StartupError> {
    let report = with_database(
        settings,
        |pool, _| async move { Ok(store::migrate(&pool).await?) },
    )?;
    Ok(if report.applied.is_empty() {
        format!("The database is current (version {}).", report.current_version)
    } else {
        format!(
            "Applied {}; the database is at version {}.",
            report.applied.join(", "),
            report.current_version
        )
    })
}
