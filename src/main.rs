//! The burnrate binary: parse the command line, install error reporting, dispatch.

use clap::Parser;

fn main() -> std::process::ExitCode {
    return_large_buffers();
    if let Err(e) = color_eyre::config::HookBuilder::default()
        .display_env_section(false)
        .install()
    {
        eprintln!("burnrate: cannot install the error reporter: {e}");
    }
    let cli = burnrate::cli::Cli::parse();
    burnrate::commands::main(cli)
}

/// Maps large buffers (a backfill message of 10,000 groups, the page of rows behind
/// it: 1-4 MB each) and unmaps them when freed. Otherwise glibc raises its mmap threshold to the
/// largest buffer freed so far (up to 32 MB), after which such buffers come from the
/// heap arena of whichever thread allocated them and stay resident once freed. A
/// fixed threshold turns that adjustment off: the dashboard's peak RSS on the
/// benchmark's data set went from about 207,000 to 193,000 KiB (BENCHMARKS.md,
/// session 8).
/// `MALLOC_MMAP_THRESHOLD_` in the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_buffers() {
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no other thread runs yet.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_buffers() {}
