//! The one-off commands (`migrate`, `content import|list`, `seed --demo`, `user
//! create-admin`, `billing reconcile|grant`): each opens the configured (or
//! embedded) database, does its work, and says what it did.

use lectern_actors::content::demo::demo_files;
use lectern_actors::content::import::{
    apply, import_bundle, parse_files, scan_dir, ImportOptions, ImportReport,
};
use lectern_actors::content::inventory::{self, Listing};
use lectern_actors::mail::EmailAddress;
use lectern_actors::store::{self, DbPool};

use crate::config::Settings;
use crate::startup::{
    accounts_context, billing_context, ensure_embedded_database, open_database, StartupError,
};
use crate::telemetry;

/// Imports the built-in demo content.
pub async fn import_demo(pool: &DbPool, settings: &Settings) -> Result<ImportReport, StartupError> {
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

/// `lectern content import [--dry-run] [--prune] DIR`: imports a folder of
/// content, all or nothing. What it passes over, and what the database has
/// that the folder does not, are warnings on standard error.
pub fn import_content(
    settings: Settings,
    dir: std::path::PathBuf,
    options: ImportOptions,
) -> Result<String, StartupError> {
    with_database(settings, move |pool, settings| async move {
        store::migrate(&pool).await?;
        let scan = scan_dir(&dir)?;
        warn(&scan.warnings);
        let bundle = scan.check(&pool, &dir, settings.markdown_options()).await?;
        let report = apply(&pool, &bundle, options).await?;
        warn(&report.warnings());
        Ok(report.to_string())
    })
}

fn warn(warnings: &[String]) {
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
}

/// `lectern content list`: every item, with its status and publish date.
pub fn list_content(settings: Settings) -> Result<String, StartupError> {
    with_database(settings, |pool, _| async move {
        store::migrate(&pool).await?;
        Ok(Listing(inventory::list(&pool).await?).to_string())
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
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let accounts = accounts_context(&settings, pool, &settings.public_url(), &log);
        let link = accounts.create_admin(&email).await?;
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

/// `lectern billing reconcile`: Stripe and the database compared and made to
/// agree now (the running site does it on its own every few hours). The
/// command is its own process, so it calls Stripe itself.
pub fn reconcile(settings: Settings) -> Result<String, StartupError> {
    with_database(settings, |pool, settings| async move {
        store::migrate(&pool).await?;
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let billing = billing_context(&settings, pool, &settings.public_url(), &log)?;
        Ok(billing.reconcile().await?.to_string())
    })
}

/// `lectern billing grant EMAIL --months N`: premium access by hand.
pub fn grant(
    settings: Settings,
    email: EmailAddress,
    months: u32,
    source: &'static str,
    note: String,
) -> Result<String, StartupError> {
    with_database(settings, move |pool, settings| async move {
        store::migrate(&pool).await?;
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let billing = billing_context(&settings, pool, &settings.public_url(), &log)?;
        let grant = billing.grant(&email, months, source, note.trim()).await?;
        let date = |at: time::OffsetDateTime| at.date().to_string();
        Ok(format!(
            "{email} has premium access ({source}, {months} month{}) from {} until {} (UTC).",
            if months == 1 { "" } else { "s" },
            date(grant.starts_at),
            date(grant.expires_at)
        ))
    })
}
