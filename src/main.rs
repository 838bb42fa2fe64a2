//! `keel`: the one binary. Subcommands are thin: the work lives in the library half (`keel::*`)
//! and in the crates.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use keel::import::{import, render_json, render_text, ImportOptions};
use keel_domain::{Date, TenantId};

#[derive(Debug, Parser)]
#[command(name = "keel", version, about = "keel: a derivatives trade-processing engine")]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Book a trade file (CSV, docs/trade-file.md) offline and print positions and rejects.
    ///
    /// Exit status: 0 when every row was read (rejected trades are business outcomes and are
    /// listed), 2 when some rows were malformed (listed with their line), 1 on a fatal error.
    Import {
        /// The trade file.
        file: PathBuf,
        /// Tenant to book for.
        #[arg(long, default_value = keel::defaults::DEMO_TENANT)]
        tenant: String,
        /// Instrument master CSV (default: the shipped examples/instruments.csv).
        #[arg(long)]
        instruments: Option<PathBuf>,
        /// Account list CSV (default: the shipped examples/accounts.csv).
        #[arg(long)]
        accounts: Option<PathBuf>,
        /// Business date for rows without a business_date (YYYY-MM-DD).
        #[arg(long)]
        business_date: Option<String>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("keel: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes to standard output; a reader that went away (`| head`) is not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to standard output"),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Commands::Import { file, tenant, instruments, accounts, business_date, json } => {
            let read = |path: Option<PathBuf>, default: &str| -> anyhow::Result<String> {
                match path {
                    None => Ok(default.to_owned()),
                    Some(path) => std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display())),
                }
            };
            let options = ImportOptions {
                tenant: TenantId::new_checked(&tenant)?,
                instruments_csv: read(instruments, keel::defaults::INSTRUMENTS_CSV)?,
                accounts_csv: read(accounts, keel::defaults::ACCOUNTS_CSV)?,
                business_date: business_date.as_deref().map(Date::parse).transpose()?,
            };
            let reader =
                File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let report = import(&options, BufReader::new(reader))?;
            let text = if json {
                serde_json::to_string_pretty(&render_json(&report))? + "\n"
            } else {
                render_text(&report)
            };
            write_stdout(&text)?;
            Ok(if report.malformed() > 0 { ExitCode::from(2) } else { ExitCode::SUCCESS })
        }
    }
}
