//! The `runner-node` binary: a stateless runner node (see `runner_node::node`).

use std::io::IsTerminal;

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        print!("{}", runner_node::node::RunnerSettings::help());
        return Ok(());
    }
    let settings = runner_node::node::RunnerSettings::from_source(&shared::config::Env)
        .context("invalid configuration (see runner-node --help)")?;
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a terminal: in a file or a log collector they are noise.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    runner_node::node::run(settings).await?;
    Ok(())
}
