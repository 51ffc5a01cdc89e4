//! Bodies of the subcommands; `main` parses the CLI and dispatches here.

pub mod check;
pub mod context;
pub mod db;
pub mod demo;
pub mod doctor;
pub mod export;
pub mod simulate;
pub mod snapshot;
pub mod watch;

use std::process::ExitCode;

use crate::cli::{Cli, Command, DbCommand};
use crate::config::Config;
use context::Context;

/// Exit code for a configuration file that cannot be used (and for `check` errors).
const EXIT_CONFIG: u8 = 2;
/// Exit code after a panic (as Rust's own).
const EXIT_PANIC: i32 = 101;

/// Loads the config, starts logging and the runtime, runs the command, and turns
/// any error into one clear message on stderr (no backtrace, no secrets).
pub fn main(cli: Cli) -> ExitCode {
    let (cfg, origin) = match Config::load(cli.global.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("burnrate: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let log = crate::logging::init(&cfg);
    install_panic_report(log.path.clone());
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = ?origin, "burnrate starting");
    let ctx = Context {
        cfg,
        origin,
        global: cli.global.clone(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("burnrate: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Check(args)) = &cli.command {
        // check has its own exit codes: 0 none firing, 1 some firing, 2 error.
        let result = runtime.block_on(check::check(&ctx, args));
        runtime.shutdown_timeout(std::time::Duration::from_millis(500));
        return match result {
            Ok(false) => ExitCode::SUCCESS,
            Ok(true) => ExitCode::from(1),
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "burnrate check failed");
                eprintln!("burnrate: {e:#}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let result = runtime.block_on(dispatch(&ctx, cli.command));
    // Background tasks (a source stuck on a dead socket) must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "burnrate failed");
            eprintln!("burnrate: {e:#}");
            if let Some(path) = &log.path {
                eprintln!("(log: {})", path.display());
            }
            ExitCode::FAILURE
        }
    }
}

/// On a panic: the report goes to the log file (written directly, so it survives
/// whatever state the logger is in), stderr says where, and the process exits with
/// status 101, whichever thread panicked (a panic in a background task must not
/// leave a dashboard running on a restored terminal). The terminal is restored
/// before this runs: `ratatui::init` wraps this hook with its own.
fn install_panic_report(log_path: Option<std::path::PathBuf>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let backtrace = std::backtrace::Backtrace::force_capture();
        previous(info);
        if let Some(path) = &log_path {
            let report = format!(
                "{} ERROR burnrate panicked: {info}\nbacktrace:\n{backtrace}\n",
                chrono::Utc::now().to_rfc3339()
            );
            let written = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, report.as_bytes()));
            match written {
                Ok(()) => eprintln!("burnrate crashed: the report is in {}", path.display()),
                Err(e) => eprintln!(
                    "burnrate crashed, and the report could not be written to {}: {e}",
                    path.display()
                ),
            }
        }
        std::process::exit(EXIT_PANIC);
    }));
}

async fn dispatch(ctx: &Context, command: Option<Command>) -> color_eyre::Result<()> {
    match command {
        None | Some(Command::Watch) => watch::watch(ctx).await,
        Some(Command::Demo(args)) => demo::demo(ctx, &args).await,
        Some(Command::Db {
            command: DbCommand::Init(args),
        }) => db::init(ctx, &args).await,
        Some(Command::Db {
            command: DbCommand::Rollup,
        }) => db::rollup(ctx).await,
        Some(Command::Snapshot(args)) => snapshot::snapshot(ctx, &args).await,
        Some(Command::Export(args)) => export::export(ctx, &args).await,
        Some(Command::Doctor(args)) => doctor::doctor(ctx, &args).await,
        Some(Command::Check(args)) => check::check(ctx, &args).await.map(|_| ()),
        Some(Command::Simulate(args)) => {
            let target = ctx.connect_target()?;
            // Simulated rows need the table; creating it is idempotent.
            crate::source::schema::init(&target, &ctx.cfg.database.table).await?;
            let mut client = target.connect().await?;
            simulate::run(&args, &mut client, &ctx.cfg.database.table).await
        }
    }
}
