//! The `rotd` binary: command line, configuration loading, wiring and signals. It is the only crate that
//! reads argv, the environment or files, installs the tracing subscriber, or uses anyhow; the libraries
//! below it take everything as arguments.

mod cli;
mod cmd;
mod fail;
mod keyfile;
mod output;
mod reconcile;
mod wiring;

use std::process::ExitCode;

use clap::Parser;

use crate::fail::Fail;

fn main() -> ExitCode {
    // Files rotd creates (database, WAL, keyring, access key file) must never be group/world readable.
    set_umask(0o077);
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.downcast_ref::<Fail>().map_or(1, |f| f.code);
            // `{:#}` prints the context chain on one line: "opening the store: database: ...".
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

#[allow(unsafe_code)]
fn set_umask(mask: libc::mode_t) {
    // SAFETY: umask(2) only changes the process file-mode creation mask; it cannot fail.
    unsafe {
        libc::umask(mask);
    }
}
