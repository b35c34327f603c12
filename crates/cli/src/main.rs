//! The `switchboard` binary: arguments to a `Config`, logging, signals, serve; or `bench`,
//! handed whole to `switchboard-loadtest`; or `token`, which mints an access token.

mod args;
mod file;
mod token;

use anyhow::Context;
use clap::CommandFactory;
use tokio::net::TcpSocket;
use tracing_subscriber::EnvFilter;

use crate::args::{Args, Command, LogFormat};

/// mimalloc: a connection storm is mostly short-lived allocations (request parsing, the
/// handshake, per-socket buffers); measured side by side, it took 19 % less CPU per join than
/// glibc's malloc, for 4 % more memory per idle socket (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Pending connections the kernel may hold before we accept them; load tests open
/// thousands at once, and the default of 128 would overflow.
const ACCEPT_BACKLOG: u32 = 4096;

fn main() -> anyhow::Result<()> {
    let loaded = Args::load(std::env::args_os().collect())?;
    let args = loaded.args;
    match args.command {
        Some(Command::Bench(bench)) => return switchboard_loadtest::run(bench),
        Some(Command::Token(token)) => return token::run(token),
        Some(Command::ExampleConfig) => {
            print!("{}", file::example(&Args::command()));
            return Ok(());
        }
        Some(Command::CheckConfig) => {
            let source = match &args.config_file {
                Some(path) => format!("flags, environment and {}", path.display()),
                None => "flags and environment (no --config)".to_owned(),
            };
            args.config()
                .with_context(|| format!("the configuration ({source})"))?;
            print!(
                "{}",
                file::effective(&Args::command(), &loaded.matches, &loaded.from_file)
            );
            eprintln!("configuration OK ({source})");
            return Ok(());
        }
        None => {}
    }
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: a log file or a test harness gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour);
    match args.log_format {
        LogFormat::Pretty => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let config = args.config().with_context(|| match &args.config_file {
        Some(path) => format!(
            "the configuration (flags, environment and {})",
            path.display()
        ),
        None => "the configuration".to_owned(),
    })?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(async move {
            let socket = if config.listen.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }?;
            socket.set_reuseaddr(true)?;
            socket.set_nodelay(true)?;
            socket
                .bind(config.listen)
                .with_context(|| format!("binding {}", config.listen))?;
            let listener = socket.listen(ACCEPT_BACKLOG)?;
            switchboard_server::serve(listener, config, shutdown_signal()).await?;
            Ok(())
        })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; SIGINT still works");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
