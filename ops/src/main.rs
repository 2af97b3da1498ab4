//! The `killswitch` binary: parse, run, report, exit. Everything else is in the library.

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use killswitch_ops::Sink;
use killswitch_ops::cli::Cli;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap prints its own usage errors and exits 2 (0 for --help and --version).
    let cli = Cli::parse();
    let mut stdout = io::stdout();
    match killswitch_ops::run(cli, &mut Sink::new(&mut stdout)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Unlike `eprintln!`, does not panic if stderr is closed.
            let _ = writeln!(
                io::stderr().lock(),
                "killswitch: {}: {}",
                err.label(),
                err.message()
            );
            err.exit().into()
        }
    }
}
