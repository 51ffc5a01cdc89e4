//! The burnrate binary: parse the command line, install error reporting, dispatch.

use clap::Parser;

fn main() -> std::process::ExitCode {
    if let Err(e) = color_eyre::config::HookBuilder::default()
        .display_env_section(false)
        .install()
    {
        eprintln!("burnrate: cannot install the error reporter: {e}");
    }
    let cli = burnrate::cli::Cli::parse();
    burnrate::commands::main(cli)
}
