//! `killswitch-fleet`: parses the command line and runs it; see the library for what the
//! commands do.

use clap::Parser;
use killswitch_fleet::cli::Cli;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    Cli::parse().run().await
}
