//! The `killswitch` binary: parse, run, report, exit. Everything else is in the library.

use std::io::{self, Write};
use std::process::ExitCode;

use killswitch_ops::Sink;
use killswitch_ops::cli::{self, Invocation};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap prints its own usage errors and exits 2 (0 for --help and --version).
    let invocation = cli::parse(std::env::args_os()).unwrap_or_else(|err| err.exit());
    let mut stdout = io::stdout();
    let mut out = Sink::new(&mut stdout);
    let result = match invocation {
        Invocation::Run(cli) => killswitch_ops::run(*cli, &mut out).await,
        Invocation::Generate(generate) => generate.run(&mut out),
    };
    match result {
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
