//! The `switchboard` binary: arguments (and the `--config` file) to a `Config`, logging,
//! signals (SIGTERM drains, SIGHUP reloads), systemd readiness, serve; or `bench`, handed whole
//! to `switchboard-loadtest`; `token`, which mints an access token; `check-config`,
//! `example-config`, `completions`, `man` and `healthcheck` for operators and packages.

mod args;
mod file;
mod health;
mod systemd;
mod token;

use std::ffi::OsString;

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

/// The man page's sections beyond the flags.
const MAN_FILES: &str = r#".SH FILES
.TP
\fI/etc/switchboard/switchboard.toml\fR
The configuration: TOML, one key per long flag (\fBswitchboard example\-config\fR prints
every one with its default). A flag wins over its environment variable, which wins over the
file. Check it with \fBswitchboard check\-config\fR.
.TP
\fI/etc/default/switchboard\fR
Environment variables for the systemd unit (\fBSWITCHBOARD_*\fR).
.SH SIGNALS
SIGTERM and SIGINT drain and stop the server. SIGHUP (\fBsystemctl reload switchboard\fR)
re-reads the configuration, applies \fB\-\-log\-level\fR and reloads TLS certificate files;
it never stops the server.
.SH SEE ALSO
\fBsystemctl\fR(1), \fBjournalctl\fR(1); docs/operations.md and docs/webhooks.md in the
source.
"#;

/// Pending connections the kernel may hold before we accept them; load tests open
/// thousands at once, and the default of 128 would overflow.
const ACCEPT_BACKLOG: u32 = 4096;

fn main() -> anyhow::Result<()> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let loaded = match Args::load(argv.clone()) {
        Ok(loaded) => loaded,
        // --help, --version and bad flags: clap prints and exits as it always does.
        Err(error) => match error.downcast::<clap::Error>() {
            Ok(clap) => clap.exit(),
            Err(error) => return Err(error),
        },
    };
    let args = loaded.args;
    match args.command {
        Some(Command::Bench(bench)) => return switchboard_loadtest::run(bench),
        Some(Command::Token(token)) => return token::run(token),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                shell,
                &mut Args::command(),
                "switchboard",
                &mut std::io::stdout(),
            );
            return Ok(());
        }
        Some(Command::Man) => {
            // The package version alone: the page is committed, and must not change per commit.
            let command = Args::command().version(env!("CARGO_PKG_VERSION"));
            let mut page = Vec::new();
            clap_mangen::Man::new(command).render(&mut page)?;
            page.extend_from_slice(MAN_FILES.as_bytes());
            std::io::Write::write_all(&mut std::io::stdout(), &page)?;
            return Ok(());
        }
        Some(Command::Healthcheck { url }) => return health::check(&url),
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
                .map_err(|error| file::locate(error, &loaded.places))
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
    let log_level = start_logging(&args);
    let config = (args.config())
        .map_err(|error| file::locate(error, &loaded.places))
        .with_context(|| match &args.config_file {
            Some(path) => format!(
                "the configuration (flags, environment and {})",
                path.display()
            ),
            None => "the configuration".to_owned(),
        })?;
    let is_tls = config.tls.is_some();
    let settings = file::effective(&Args::command(), &loaded.matches, &loaded.from_file);
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
            tokio::spawn(reload_on_hangup(argv, log_level, settings, is_tls));
            // READY=1 once TLS, the cluster client and the SFU have started: a part that
            // fails stops the start before systemd hears the server is up.
            switchboard_server::serve_with(listener, config, shutdown_signal(), systemd::ready)
                .await?;
            Ok(())
        })
}

/// Changes the log filter of the running process.
type LogLevel = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Starts logging with `--log-level` (or `RUST_LOG`, which wins), keeping a handle to
/// change the filter on SIGHUP.
fn start_logging(args: &Args) -> LogLevel {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: a log file or a test harness gets plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let set = |text: &str| EnvFilter::try_new(text).map_err(|error| error.to_string());
    match args.log_format {
        LogFormat::Pretty => {
            let logs = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(colour)
                .with_filter_reloading();
            let handle = logs.reload_handle();
            logs.init();
            Box::new(move |text| handle.reload(set(text)?).map_err(|e| e.to_string()))
        }
        LogFormat::Json => {
            let logs = tracing_subscriber::fmt()
                .json()
                .with_env_filter(filter)
                .with_filter_reloading();
            let handle = logs.reload_handle();
            logs.init();
            Box::new(move |text| handle.reload(set(text)?).map_err(|e| e.to_string()))
        }
    }
}

/// SIGHUP (`systemctl reload`) never stops the server: it re-reads the configuration and
/// applies what can change while running, the log level; certificate files reload on their
/// own (tls.rs listens for SIGHUP too). Anything else that changed is reported for the next
/// restart, and a configuration with an error is reported and ignored.
async fn reload_on_hangup(
    argv: Vec<OsString>,
    log_level: LogLevel,
    mut settings: String,
    is_tls: bool,
) {
    let mut hangups = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP: reloading is off");
            return;
        }
    };
    let not_level = |line: &&str| !line.starts_with("log-level = ");
    while hangups.recv().await.is_some() {
        systemd::reloading();
        match Args::load(argv.clone()) {
            Err(error) => {
                tracing::warn!(
                    "SIGHUP: the configuration has an error, nothing reloaded: {error:#}"
                );
            }
            Ok(loaded) => {
                let now = file::effective(&Args::command(), &loaded.matches, &loaded.from_file);
                if std::env::var_os("RUST_LOG").is_some() {
                    tracing::info!("SIGHUP: RUST_LOG is set and decides the log level");
                } else {
                    match log_level(&loaded.args.log_level) {
                        Ok(()) => {
                            tracing::info!(level = %loaded.args.log_level, "SIGHUP: log level set")
                        }
                        Err(error) => tracing::warn!(%error, "SIGHUP: log level unchanged"),
                    }
                }
                let others = |text: &str| {
                    text.lines()
                        .filter(not_level)
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                if others(&now) != others(&settings) {
                    tracing::warn!("SIGHUP: settings other than log-level changed; they apply at the next restart");
                } else if !is_tls {
                    tracing::info!("SIGHUP: nothing else to reload");
                }
                settings = now;
            }
        }
        systemd::reloaded();
    }
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
        systemd::stopping();
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
