//! Tracing to a file: the terminal belongs to the dashboard.

use std::path::{Path, PathBuf};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, default_log_file};

/// Keeps the log writer alive; drop it last to flush.
pub struct LogGuard {
    _guard: Option<WorkerGuard>,
    pub path: Option<PathBuf>,
}

/// Log lines queued for the writer thread before new ones are dropped.
const LOG_QUEUE_LINES: usize = 8_192;

/// Logs to `log.file` (default under XDG state). Failing to open the log is not
/// fatal: burnrate runs on, and says where it could not write.
pub fn init(cfg: &Config) -> LogGuard {
    let path = cfg.log.file.clone().unwrap_or_else(default_log_file);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(cfg.log.level.as_deref().unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    match open(&path) {
        Ok(file) => {
            // The default queue holds 128,000 lines, allocated up front (4 MB of
            // resident memory); burnrate logs a few lines a second at most.
            let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
                .buffered_lines_limit(LOG_QUEUE_LINES)
                .finish(file);
            let ok = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(writer)
                .with_ansi(false)
                .try_init()
                .is_ok();
            LogGuard {
                _guard: Some(guard),
                path: ok.then_some(path),
            }
        }
        Err(e) => {
            eprintln!(
                "burnrate: not logging: cannot open log file {}: {e} (set log.file in the config)",
                path.display()
            );
            LogGuard {
                _guard: None,
                path: None,
            }
        }
    }
}

fn open(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}
