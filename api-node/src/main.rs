//! The `api-node` binary: reads `FN_*` settings and serves Fn's management API until SIGTERM/SIGINT.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        print!("{}", api_node::Settings::help());
        return Ok(());
    }
    let settings = api_node::Settings::from_env().context("invalid configuration (see api-node --help)")?;
    api_node::run(settings).await?;
    Ok(())
}
