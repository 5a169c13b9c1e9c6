//! The one-off commands (`migrate`, `content import|export|list`, `seed --demo`, `user
//! create-admin`, `billing reconcile|grant`, `backup now|list|verify|restore`):
//! each opens the configured (or embedded) database, does its work, and says
//! what it did.

use lectern_actors::backup::{BackupRow, Backups, Kind, Which};
use lectern_actors::billing::GrantedBy;
use lectern_actors::content::demo::demo_files;
use lectern_actors::content::export::{export, Destination};
use lectern_actors::content::import::{
    apply, import_bundle, parse_files, scan_dir, ImportOptions, ImportReport,
};
use lectern_actors::content::inventory::{self, Listing};
use lectern_actors::mail::EmailAddress;
use lectern_actors::store::{self, DbConfig, DbPool};

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
    with_database_config(settings, |pool, _, settings| work(pool, settings))
}

/// `with_database`, for work that also needs the connection settings (to
/// hand to pg_dump, say).
fn with_database_config<T, F, Fut>(settings: Settings, work: F) -> Result<T, StartupError>
where
    F: FnOnce(DbPool, DbConfig, Settings) -> Fut,
    Fut: std::future::Future<Output = Result<T, StartupError>>,
{
    let telemetry = telemetry::init(&settings).map_err(StartupError::Log)?;
    let (database, mut embedded) = open_database(&settings, &telemetry.log)?;
    let outcome = actix_rt::System::new().block_on(async {
        ensure_embedded_database(&embedded).await?;
        let pool = store::connect_pool(database.clone(), 2)?;
        work(pool, database, settings).await
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

/// `lectern content export [--force] DIR`: writes everything as files that
/// `content import` reads. The destination is checked before the database
/// is opened.
pub fn export_content(
    settings: Settings,
    dir: &std::path::Path,
    force: bool,
) -> Result<String, StartupError> {
    let destination = Destination::check(dir, force)?;
    with_database(settings, move |pool, _| async move {
        store::migrate(&pool).await?;
        Ok(export(&pool, &destination).await?.to_string())
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
        let grant = billing
            .grant(&email, months, source, note.trim(), GrantedBy::Command)
            .await?;
        let date = |at: time::OffsetDateTime| at.date().to_string();
        Ok(format!(
            "{email} has premium access ({source}, {months} month{}) from {} until {} (UTC).",
            if months == 1 { "" } else { "s" },
            date(grant.starts_at),
            date(grant.expires_at)
        ))
    })
}

/// Runs `work` with the backups context of the configured database.
fn with_backups<T, F, Fut>(settings: Settings, work: F) -> Result<T, StartupError>
where
    F: FnOnce(Backups) -> Fut,
    Fut: std::future::Future<Output = Result<T, StartupError>>,
{
    let storage = settings.backup_storage()?;
    with_database_config(settings, |pool, database, _| async move {
        store::migrate(&pool).await?;
        work(Backups::new(pool, database, storage)).await
    })
}

/// Progress of long work, on standard error.
fn progress(line: &str) {
    eprintln!("{line}");
}

fn seconds(took: std::time::Duration) -> String {
    format!("{:.2} s", took.as_secs_f64())
}

/// `lectern backup now [--kind K]`: dumps the database, then verifies the dump.
pub fn backup_now(settings: Settings, kind: Kind) -> Result<String, StartupError> {
    with_backups(settings, move |backups| async move {
        let dumped = backups.backup_now(kind, &progress).await?;
        let report = format!(
            "backup   {}\nstored   {}\nbytes    {}\nsha256   {}\ndumped   {} tables, {} rows in {}",
            dumped.key,
            dumped.location,
            dumped.bytes,
            dumped.sha256,
            dumped.tables,
            dumped.rows,
            seconds(dumped.took)
        );
        match backups.verify(&dumped.key, &progress).await {
            Ok(verified) => Ok(format!(
                "{report}\nverified {} tables, {} rows: every row count and checksum matches, in {}",
                verified.tables,
                verified.rows,
                seconds(verified.took)
            )),
            Err(e) => {
                println!("{report}");
                Err(e.into())
            }
        }
    })
}

/// `lectern backup list`: every backup, newest first.
pub fn list_backups(settings: Settings) -> Result<String, StartupError> {
    with_backups(settings, |backups| async move {
        Ok(backup_table(&backups.list().await?))
    })
}

fn backup_table(rows: &[BackupRow]) -> String {
    if rows.is_empty() {
        return "No backups yet (lectern backup now makes one).".to_owned();
    }
    let when = |at: time::OffsetDateTime| {
        let at = at.to_offset(time::UtcOffset::UTC);
        format!(
            "{} {:02}:{:02}:{:02}Z",
            at.date(),
            at.hour(),
            at.minute(),
            at.second()
        )
    };
    let mut lines = vec![[
        "KEY".to_owned(),
        "KIND".to_owned(),
        "STATUS".to_owned(),
        "BYTES".to_owned(),
        "STARTED".to_owned(),
        "VERIFIED".to_owned(),
    ]];
    for row in rows {
        let verified = match (row.verified_ok, row.verified_at) {
            (Some(true), Some(at)) => format!("ok {}", when(at)),
            (_, Some(at)) => format!("FAILED {}", when(at)),
            _ => "never".to_owned(),
        };
        let status = match &row.error {
            Some(error) => format!("{}: {error}", row.status),
            None => row.status.clone(),
        };
        lines.push([
            row.key.clone(),
            row.kind.clone(),
            status,
            row.bytes.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            when(row.started_at),
            verified,
        ]);
    }
    // The status (which may carry an error) goes last, so the columns stay aligned.
    let order = [0, 1, 3, 4, 5, 2];
    let widths: Vec<usize> = order
        .iter()
        .map(|&c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0))
        .collect();
    lines
        .iter()
        .map(|line| {
            order
                .iter()
                .zip(&widths)
                .map(|(&c, &width)| format!("{:width$}", line[c]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `lectern backup verify KEY`.
pub fn verify_backup(settings: Settings, key: String) -> Result<String, StartupError> {
    with_backups(settings, move |backups| async move {
        let verified = backups.verify(&key, &progress).await?;
        Ok(format!(
            "{} verified: sha256 matches; restored into a scratch database, {} tables, {} rows: every row count and checksum matches, in {}",
            verified.key,
            verified.tables,
            verified.rows,
            seconds(verified.took)
        ))
    })
}

/// `lectern backup restore (KEY | --latest) --into DATABASE_URL [--force]`.
pub fn restore_backup(
    settings: Settings,
    which: Which,
    into: DbConfig,
    force: bool,
) -> Result<String, StartupError> {
    with_backups(settings, move |backups| async move {
        let restored = backups.restore(&which, &into, force, &progress).await?;
        Ok(format!(
            "restored {} ({} bytes) into {}: {} tables, in {}",
            restored.key,
            restored.bytes,
            restored.database,
            restored.tables,
            seconds(restored.took)
        ))
    })
}
