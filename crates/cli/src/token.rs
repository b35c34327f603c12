//! `switchboard token`: prints a token for a client, signed with one of the server's keys.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use switchboard_auth::{mint, Scope, SigningKey};

/// Mint an access token (a JWT) for `--auth optional|required`
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// File holding the HS256 secret (the server's --auth-secret-file for this key id)
    #[arg(
        long,
        conflicts_with = "key_file",
        required_unless_present = "key_file"
    )]
    secret_file: Option<PathBuf>,

    /// PEM private key (Ed25519 signs EdDSA tokens, P-256 ES256 ones), whose public key the
    /// server has under this key id (--auth-public-key)
    #[arg(long)]
    key_file: Option<PathBuf>,

    /// The key id the server knows the key by
    #[arg(long)]
    kid: String,

    /// The subject (who the token is for) [default: --name]
    #[arg(long)]
    sub: Option<String>,

    /// The room it may join: an id, PREFIX* or * [default: none]
    #[arg(long)]
    room: Option<String>,

    /// The name it joins under [default: --sub]
    #[arg(long)]
    name: Option<String>,

    /// Dialects it may use (repeatable: conference, room-relay, query-rooms, pairing,
    /// broadcast) [default: all]
    #[arg(long = "dialect")]
    dialects: Vec<String>,

    /// The broadcast channel it may subscribe to: a name, PREFIX* or * [default: none]
    #[arg(long)]
    channel: Option<String>,

    /// May publish media (SFU produce)
    #[arg(long)]
    publish: bool,

    /// May receive media (SFU consume)
    #[arg(long)]
    subscribe: bool,

    /// May use /pairing
    #[arg(long)]
    pair: bool,

    /// May read /api/stats, /dashboard and /metrics when tokens are required
    #[arg(long)]
    admin: bool,

    /// How long the token is valid
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    ttl: Duration,
}

/// Prints the token on standard output.
pub(crate) fn run(args: TokenArgs) -> anyhow::Result<()> {
    let key = match (&args.secret_file, &args.key_file) {
        (Some(path), _) => {
            let secret = read_secret(path)?;
            SigningKey::secret(&args.kid, &secret)?
        }
        (None, Some(path)) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            SigningKey::private_key_pem(&args.kid, &pem)?
        }
        (None, None) => bail!("--secret-file or --key-file is needed"),
    };
    let Some(subject) = args.sub.clone().or_else(|| args.name.clone()) else {
        bail!("--sub or --name is needed");
    };
    let scope = Scope {
        room: args.room,
        name: args.name.filter(|name| *name != subject),
        dialects: (!args.dialects.is_empty()).then_some(args.dialects),
        publish: args.publish,
        subscribe: args.subscribe,
        channel: args.channel,
        pair: args.pair,
        admin: args.admin,
    };
    println!("{}", mint(&key, &subject, scope, args.ttl)?);
    Ok(())
}

/// A secret file's content, without the line end an editor adds.
pub(crate) fn read_secret(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let mut secret = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    while secret.last().is_some_and(u8::is_ascii_whitespace) {
        secret.pop();
    }
    if secret.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(secret)
}
