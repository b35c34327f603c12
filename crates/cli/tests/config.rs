//! The config file through the real binary: precedence (flag > environment > file > default),
//! every error path naming the file, line and key, `check-config` redacting secrets, the
//! example file kept equal to the flags, and a server started from a file.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{becomes_healthy, BINARY};

const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../packaging/switchboard.toml"
);

/// A file in a fresh temporary directory, removed with it.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let dir =
            std::env::temp_dir().join(format!("switchboard-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("switchboard.toml");
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Runs the binary with only the environment given (none of the test runner's).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BINARY)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// `check-config`'s line for one setting.
fn line<'o>(printed: &'o str, key: &str) -> &'o str {
    printed
        .lines()
        .find(|line| line.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{printed}"))
}

#[test]
fn flag_beats_environment_beats_file_beats_default() {
    let file = TempFile::new(
        "precedence",
        "max-frame-bytes = 1000\n\
         max-room-members = 50\n\
         idle-timeout = \"20s\"\n\
         ws-origin = [\"https://a.example\", \"https://b.example\"]\n\
         no-media = true\n",
    );
    let output = run(
        &[
            "--idle-timeout",
            "40s",
            "check-config",
            "--config",
            file.path(),
        ],
        &[
            ("SWITCHBOARD_MAX_FRAME_BYTES", "2000"),
            ("SWITCHBOARD_IDLE_TIMEOUT", "30s"),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert_eq!(
        line(&printed, "idle-timeout"),
        "idle-timeout = \"40s\"  # flag"
    );
    assert_eq!(
        line(&printed, "max-frame-bytes"),
        "max-frame-bytes = 2000  # environment"
    );
    assert_eq!(
        line(&printed, "max-room-members"),
        "max-room-members = 50  # config file"
    );
    assert_eq!(
        line(&printed, "ws-origin"),
        "ws-origin = [\"https://a.example\", \"https://b.example\"]  # config file"
    );
    assert_eq!(line(&printed, "no-media"), "no-media = true  # config file");
    assert_eq!(
        line(&printed, "outbox-capacity"),
        "outbox-capacity = 512  # default"
    );

    // The variable names the file too; a repeatable flag replaces the file's list whole.
    let output = run(
        &["--ws-origin", "https://c.example", "check-config"],
        &[("SWITCHBOARD_CONFIG", file.path())],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert_eq!(
        line(&printed, "max-room-members"),
        "max-room-members = 50  # config file"
    );
    assert_eq!(
        line(&printed, "ws-origin"),
        "ws-origin = [\"https://c.example\"]  # flag"
    );
}

#[test]
fn every_error_names_the_file_line_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "unknown",
            "# a comment\n\nbogus-key = 1\n",
            ":3:1: unknown key `bogus-key`",
        ),
        (
            "value",
            "listen = \"127.0.0.1:1\"\nmax-room-members = \"many\"\n",
            ":2:1: `max-room-members`: invalid value 'many'",
        ),
        (
            "duration",
            "idle-timeout = \"soon\"\n",
            ":1:1: `idle-timeout`: invalid value 'soon'",
        ),
        (
            "enum",
            "\nauth = \"sometimes\"\n",
            ":2:1: `auth`: invalid value 'sometimes'",
        ),
        (
            "type",
            "max-room-members = [1, 2]\n",
            ":1:1: `max-room-members` takes a string or a number",
        ),
        (
            "flag",
            "no-media = \"yes\"\n",
            ":1:1: `no-media` takes true or false",
        ),
        (
            "array",
            "ws-origin = [{ a = 1 }]\n",
            ":1:1: `ws-origin` takes an array of strings",
        ),
        (
            "table",
            "[server]\nlisten = \":1\"\n",
            ":1:2: unknown key `server`",
        ),
        ("syntax", "listen = \":1\"\nmax-room-members = = 3\n", ":2:"),
        (
            "config",
            "config = \"/etc/other.toml\"\n",
            ":1:1: unknown key `config`",
        ),
    ];
    for (name, text, expected) in cases {
        let file = TempFile::new(name, text);
        let output = run(&["check-config", "--config", file.path()], &[]);
        let message = stderr(&output);
        assert!(!output.status.success(), "{name}: accepted");
        assert!(
            message.contains(&format!("{}{expected}", file.path())),
            "{name}: {message:?} lacks {expected:?}"
        );
    }

    let output = run(
        &["check-config", "--config", "/nonexistent/switchboard.toml"],
        &[],
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("reading the config file /nonexistent/switchboard.toml"));

    // Settings that are each fine but wrong together: the file's lines behind the flags.
    let file = TempFile::new("together", "\nturn-secret = \"s\"\n");
    let output = run(&["check-config", "--config", file.path()], &[]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains(&format!("{}:2:1: `turn-secret`", file.path())),
        "{message}"
    );
    assert!(
        message.contains("--turn-secret needs at least one --turn-url"),
        "{message}"
    );
    let file = TempFile::new(
        "conflict",
        "# TURN\nturn-secret-file = \"/nonexistent/secret\"\nturn-secret = \"s\"\n",
    );
    let output = run(&["check-config", "--config", file.path()], &[]);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("cannot be used with"), "{message}");
    for (line, key) in [(2, "turn-secret-file"), (3, "turn-secret")] {
        let place = format!("{}:{line}:1: `{key}`", file.path());
        assert!(message.contains(&place), "{message} lacks {place}");
    }

    // A server with a broken file does not start.
    let file = TempFile::new("serve", "bogus = true\n");
    let output = run(&["--config", file.path()], &[]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("unknown key `bogus`"));
}

#[test]
fn check_config_redacts_secrets() {
    let file = TempFile::new(
        "secrets",
        "redis = \"redis://admin:hunter2@127.0.0.1:6379/0\"\n\
         auth = \"required\"\n\
         auth-secret = [\"k1=first-secret\", \"k2=second-secret\"]\n\
         turn-secret = \"turn-secret-value\"\n\
         turn-url = [\"turn:127.0.0.1:3478\"]\n\
         webhook = [\"http://127.0.0.1:9/hooks\"]\n\
         webhook-secret = \"hook-secret-value\"\n",
    );
    let output = run(&["check-config", "--config", file.path()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    for secret in [
        "hunter2",
        "first-secret",
        "second-secret",
        "turn-secret-value",
    ] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    assert_eq!(
        line(&printed, "redis"),
        "redis = \"redis://admin:<redacted>@127.0.0.1:6379/0\"  # config file"
    );
    assert_eq!(
        line(&printed, "auth-secret"),
        "auth-secret = [\"k1=<redacted>\", \"k2=<redacted>\"]  # config file"
    );
    assert!(line(&printed, "turn-secret").contains("<redacted>"));
    assert!(line(&printed, "webhook-secret").contains("<redacted>"));

    // From the environment too.
    let output = run(
        &["check-config"],
        &[
            ("SWITCHBOARD_AUTH_SECRETS", "k9=env-secret"),
            ("SWITCHBOARD_REDIS_URL", "redis://:pw-in-env@127.0.0.1:6379"),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    assert!(
        !printed.contains("env-secret") && !printed.contains("pw-in-env"),
        "{printed}"
    );
}

#[test]
fn the_example_file_lists_every_flag_with_its_default() {
    let generated = stdout(&run(&["example-config"], &[]));
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    assert!(
        example == generated,
        "packaging/switchboard.toml is out of date with the flags: regenerate it with\n  \
         cargo run -- example-config > packaging/switchboard.toml"
    );

    // Every flag of --help is a key in it.
    let help = stdout(&run(&["--help"], &[]));
    let flags: Vec<&str> = help
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("--"))
        .map(|word| word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|flag| !["help", "version", "config"].contains(flag) && !flag.is_empty())
        .collect();
    assert!(flags.len() > 40, "{flags:?}");
    for flag in &flags {
        assert!(
            example.contains(&format!("\n# {flag} =")),
            "packaging/switchboard.toml lacks {flag}"
        );
    }

    // check-config accepts it as shipped, and with every default uncommented, which then
    // gives exactly the defaults.
    let output = run(&["check-config", "--config", EXAMPLE], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let defaults = stdout(&run(&["check-config"], &[]));
    let uncommented: String = example
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .filter(|line| line.contains(" = ") && !line.starts_with('('))
        .filter(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|key| flags.contains(&key))
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let file = TempFile::new("uncommented", &uncommented);
    let output = run(&["check-config", "--config", file.path()], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let without_source = |printed: &str| -> Vec<String> {
        printed
            .lines()
            .map(|line| line.split("  # ").next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(without_source(&stdout(&output)), without_source(&defaults));
}

#[test]
fn a_server_runs_from_its_file() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = TempFile::new(
        "serve-ok",
        &format!("listen = \"127.0.0.1:{port}\"\nno-media = true\n"),
    );
    let mut child = Command::new(BINARY)
        .args(["--config", file.path()])
        .env_clear()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let healthy = becomes_healthy(port);
    let _ = child.kill();
    let _ = child.wait();
    assert!(healthy, "no /healthz on the file's port {port}");
}
