//! The `killswitch` binary: parse, run, print, exit. Everything else is in the library.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use killswitch_ops::Exit;
use killswitch_ops::cli::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap prints its own usage errors and exits 2 (0 for --help and --version).
    let cli = Cli::parse();
    match killswitch_ops::run(cli).await {
        Ok(output) => match io::stdout().lock().write_all(output.as_bytes()) {
            Ok(()) => ExitCode::SUCCESS,
            // The reader went away (`| head`): nothing left to tell anyone.
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(err) => {
                report(&format!("cannot write the result: {err}"));
                Exit::Error.into()
            }
        },
        Err(err) => {
            report(err.message());
            err.exit().into()
        }
    }
}

/// Prints an error on stderr. Unlike `eprintln!`, does not panic if stderr is closed.
fn report(message: &str) {
    let _ = writeln!(io::stderr().lock(), "killswitch: error: {message}");
}
