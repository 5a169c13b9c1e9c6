//! The command line: `lectern [serve]`, `migrate`, `config show`, `content
//! import|export|list`, `seed --demo`, `user create-admin`, `billing
//! reconcile|grant`, `backup now|list|verify|restore`.
//! Exit status: 0 done, 1 failed while running, 2 bad usage or configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lectern_actors::backup::{Kind, Which};
use lectern_actors::content::import::ImportOptions;
use lectern_actors::mail::EmailAddress;

use crate::config::{DatabaseUrl, Settings};
use crate::{commands, startup};

#[derive(Debug, Parser)]
#[command(
    name = "lectern",
    version,
    about = "A learning platform for screencasts and articles, in one binary"
)]
pub struct Cli {
    /// Directory of files overriding the built-in configuration:
    /// $LECTERN_ENV.toml, then local.toml [default: config, if it exists]
    #[arg(long, global = true, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web site (the default command). With no database URL, runs a
    /// private PostgreSQL under the data directory.
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Manage content.
    Content {
        #[command(subcommand)]
        action: ContentAction,
    },
    /// Manage accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Subscriptions and grants.
    Billing {
        #[command(subcommand)]
        action: BillingAction,
    },
    /// Dump the database, check dumps, restore one.
    Backup {
        #[command(subcommand)]
        action: BackupAction,
    },
    /// Load sample data into the database.
    Seed {
        /// The demo content written for Lectern: series, episodes, articles.
        #[arg(long, required = true)]
        demo: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// Dump the database now (pg_dump -Fc) into the backup storage, then
    /// verify the dump; prints its key, size and sha256.
    Now {
        /// What the backup is for (daily and weekly are the scheduler's).
        #[arg(long, value_enum, default_value = "manual")]
        kind: BackupKind,
    },
    /// Every backup, newest first: key, kind, size, start, verification, status.
    List,
    /// Check a backup's sha256, restore it into a scratch database on the
    /// same server and compare every table's row count with the counts
    /// taken when it was dumped; the scratch database is dropped after.
    Verify {
        /// The backup's key, as `backup list` shows it.
        key: String,
    },
    /// Restore a backup into the database --into names, after checking its
    /// sha256. A database that already has tables is refused unless --force.
    Restore {
        /// The backup's key, as `backup list` shows it.
        #[arg(required_unless_present = "latest", conflicts_with = "latest")]
        key: Option<String>,
        /// The newest backup that succeeded.
        #[arg(long)]
        latest: bool,
        /// The database to restore into (it must exist).
        #[arg(long, value_name = "DATABASE_URL", value_parser = parse_database_url)]
        into: Box<DatabaseUrl>,
        /// Restore into a database that has tables: the dump's tables and
        /// other objects replace their namesakes there.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BackupKind {
    Daily,
    Weekly,
    Manual,
}

impl BackupKind {
    fn kind(self) -> Kind {
        match self {
            BackupKind::Daily => Kind::Daily,
            BackupKind::Weekly => Kind::Weekly,
            BackupKind::Manual => Kind::Manual,
        }
    }
}

fn parse_database_url(raw: &str) -> Result<Box<DatabaseUrl>, String> {
    DatabaseUrl::parse(raw).map(Box::new)
}

#[derive(Debug, Subcommand)]
pub enum BillingAction {
    /// Compare every live subscription with Stripe's, fix what drifted, and
    /// check the plans' prices and the region coupons; prints each fix.
    Reconcile,
    /// Give EMAIL's account premium access for some months (paid by PayPal,
    /// or complimentary), after any grant it already has.
    Grant {
        /// The member's email address (the account must exist).
        #[arg(value_parser = parse_email)]
        email: EmailAddress,
        /// How many months, 1 to 120.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=120))]
        months: u32,
        /// How it was paid.
        #[arg(long, value_enum, default_value = "paypal")]
        source: GrantSource,
        /// A note for the operator (a PayPal transaction id, say).
        #[arg(long, default_value = "")]
        note: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GrantSource {
    Paypal,
    Complimentary,
}

impl GrantSource {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantSource::Paypal => "paypal",
            GrantSource::Complimentary => "complimentary",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ContentAction {
    /// Import a folder of Markdown files with TOML front matter
    /// (series/*.md, episodes/*.md, articles/*.md), upserting by slug.
    /// Every file is checked first; on any error nothing is written.
    /// Files and folders it passes over are listed as warnings; a folder
    /// with nothing to import is an error.
    Import {
        /// The folder to import (the one holding series/, episodes/, articles/).
        dir: PathBuf,
        /// Check everything and say what would change, but write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Unpublish (set to draft, never delete) the published episodes and
        /// articles that have no file in DIR, and list them.
        #[arg(long)]
        prune: bool,
    },
    /// Write every series, episode and article (published, scheduled and
    /// drafts) and every media file as the folder `content import` reads:
    /// export, edit, import. DIR must be missing or empty, unless --force.
    Export {
        /// The folder to write (created if missing).
        dir: PathBuf,
        /// Write into a folder that has files: its series/, episodes/,
        /// articles/ and media/ are replaced, and nothing else in it is touched.
        #[arg(long)]
        force: bool,
    },
    /// List every series, episode and article: published, scheduled or draft.
    List,
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Make EMAIL an administrator (creating the account if needed) and
    /// print a one-time login link, valid for 24 hours.
    CreateAdmin {
        /// The administrator's email address.
        #[arg(value_parser = parse_email)]
        email: EmailAddress,
    },
}

fn parse_email(raw: &str) -> Result<EmailAddress, String> {
    EmailAddress::parse(raw).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the effective configuration, secrets redacted.
    Show,
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let config_dir = match cli.config_dir {
        Some(dir) if !dir.is_dir() => {
            eprintln!(
                "lectern: --config-dir {}: no such directory (leave it out to use the built-in configuration)",
                dir.display()
            );
            return ExitCode::from(2);
        }
        Some(dir) => dir,
        None => PathBuf::from(crate::config::DEFAULT_CONFIG_DIR),
    };
    let settings = match Settings::load(&config_dir) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("lectern: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => startup::serve(settings).map(|()| None),
        Command::Migrate => commands::migrate(settings).map(Some),
        Command::Content {
            action: ContentAction::Import { dir, dry_run, prune },
        } => commands::import_content(settings, dir, ImportOptions { dry_run, prune }).map(Some),
        Command::Content {
            action: ContentAction::Export { dir, force },
        } => commands::export_content(settings, &dir, force).map(Some),
        Command::Content {
            action: ContentAction::List,
        } => commands::list_content(settings).map(Some),
        Command::User {
            action: UserAction::CreateAdmin { email },
        } => commands::create_admin(settings, email).map(Some),
        Command::Seed { demo: _ } => commands::seed_demo(settings).map(Some),
        Command::Billing {
            action: BillingAction::Reconcile,
        } => commands::reconcile(settings).map(Some),
        Command::Billing {
            action:
                BillingAction::Grant {
                    email,
                    months,
                    source,
                    note,
                },
        } => commands::grant(settings, email, months, source.as_str(), note).map(Some),
        Command::Backup {
            action: BackupAction::Now { kind },
        } => commands::backup_now(settings, kind.kind()).map(Some),
        Command::Backup {
            action: BackupAction::List,
        } => commands::list_backups(settings).map(Some),
        Command::Backup {
            action: BackupAction::Verify { key },
        } => commands::verify_backup(settings, key).map(Some),
        Command::Backup {
            action:
                BackupAction::Restore {
                    key,
                    latest: _,
                    into,
                    force,
                },
        } => {
            let which = key.map_or(Which::Latest, Which::Key);
            commands::restore_backup(settings, which, into.config().clone(), force).map(Some)
        }
        Command::Config {
            action: ConfigAction::Show,
        } => Ok(Some(format!(
            "# environment: {}\n{}",
            settings.environment.as_str(),
            settings.to_redacted_toml()
        ))),
    };
    match outcome {
        Ok(output) => {
            if let Some(output) = output {
                println!("{}", output.trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lectern: {e}");
            ExitCode::from(e.exit_status())
        }
    }
}
