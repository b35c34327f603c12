//! What the packages ship, checked against the binary: the man page (current, every flag),
//! shell completions, `--version` with the git revision, `healthcheck`, and the Dockerfile's
//! runtime stage using only flags and subcommands the binary accepts.

#![allow(clippy::unwrap_used)] // tests: an unwrap failing is the test failing

mod common;

use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::{free_port, healthy, Process, BINARY};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

fn run(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .env_clear()
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Every long flag `--help` lists (but --help and --version).
fn flags() -> Vec<String> {
    let help = stdout(&run(&["--help"]));
    let flags: Vec<String> = help
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("--"))
        .map(|word| word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|flag| !flag.is_empty() && !["help", "version"].contains(flag))
        .map(str::to_owned)
        .collect();
    assert!(flags.len() > 40, "{flags:?}");
    flags
}

#[test]
fn the_man_page_is_current_and_lists_every_flag() {
    let page = std::fs::read_to_string(format!("{ROOT}/packaging/switchboard.1")).unwrap();
    assert!(
        page == stdout(&run(&["man"])),
        "packaging/switchboard.1 is out of date: regenerate it with\n  \
         cargo run -- man > packaging/switchboard.1"
    );
    for flag in flags() {
        let roff = format!("\\fB\\-\\-{}\\fR", flag.replace('-', "\\-"));
        assert!(page.contains(&roff), "the man page lacks --{flag}");
    }
    assert!(page.contains("/etc/switchboard/switchboard.toml"));
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = run(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = stdout(&output);
        for word in ["max-room-members", "check-config", "webhook-secret"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    assert!(!run(&["completions", "cmd.exe"]).status.success());
    // The packaged scripts are the binary's.
    for (shell, file) in [
        ("bash", "switchboard.bash"),
        ("zsh", "_switchboard"),
        ("fish", "switchboard.fish"),
    ] {
        let packaged =
            std::fs::read_to_string(format!("{ROOT}/packaging/completions/{file}")).unwrap();
        assert!(
            packaged == stdout(&run(&["completions", shell])),
            "packaging/completions/{file} is out of date: cargo run -- completions {shell} > \
             packaging/completions/{file}"
        );
    }
}

#[test]
fn version_names_the_git_revision() {
    let version = stdout(&run(&["--version"]));
    let revision = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(ROOT)
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8(output.stdout).unwrap().trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    assert_eq!(
        version.trim(),
        format!("switchboard {} ({revision})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn healthcheck_asks_readyz() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/readyz");
    assert!(
        !run(&["healthcheck", &url]).status.success(),
        "nothing listens yet"
    );
    let _server = Process(
        Command::new(BINARY)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--no-media"])
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthy(port) {
        assert!(Instant::now() < deadline, "the server did not start");
        sleep(Duration::from_millis(50));
    }
    let output = run(&["healthcheck", &url]);
    assert!(output.status.success(), "{output:?}");
    let missing = format!("http://127.0.0.1:{port}/no-such-page");
    assert!(!run(&["healthcheck", &missing]).status.success());
    assert!(!run(&["healthcheck", "https://127.0.0.1/readyz"])
        .status
        .success());
}

/// A JSON-array instruction's words (`CMD ["a", "b"]`), joined over continuation lines.
fn exec_form(dockerfile: &str, instruction: &str) -> Vec<String> {
    let text = dockerfile.replace("\\\n", " ");
    let line = text
        .lines()
        .rev()
        .find(|line| line.trim_start().starts_with(instruction))
        .unwrap_or_else(|| panic!("no {instruction} in the Dockerfile"));
    let array = &line[line.find('[').unwrap()..=line.rfind(']').unwrap()];
    serde_json::from_str(array).unwrap()
}

/// The runtime stage's ENTRYPOINT, CMD, ENV and HEALTHCHECK, run against this build's binary:
/// what can be checked without a Docker engine (the build stage is `packaging/build-release.sh`,
/// which scripts/test-deb.sh runs).
#[test]
fn the_dockerfile_runs_what_the_binary_accepts() {
    let dockerfile = std::fs::read_to_string(format!("{ROOT}/Dockerfile")).unwrap();
    assert!(dockerfile.contains("FROM gcr.io/distroless/cc-debian12:nonroot"));
    assert!(dockerfile.contains("USER nonroot:nonroot"));
    assert!(dockerfile.contains("EXPOSE 8080/tcp 8080/udp"));
    assert!(dockerfile.contains("RUN packaging/build-release.sh /out"));
    assert!(
        dockerfile.contains("COPY packaging/switchboard.toml /etc/switchboard/switchboard.toml")
    );
    let entrypoint = exec_form(&dockerfile, "ENTRYPOINT");
    assert_eq!(entrypoint, ["/usr/local/bin/switchboard"]);
    let cmd = exec_form(&dockerfile, "CMD [");
    // The CMD's flags, with the image's environment (its config file at the path it is
    // copied from), pass check-config.
    let mut args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    args.push("check-config");
    let output = Command::new(BINARY)
        .args(&args)
        .env_clear()
        .env(
            "SWITCHBOARD_CONFIG",
            format!("{ROOT}/packaging/switchboard.toml"),
        )
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(stdout(&output).contains("listen = \"0.0.0.0:8080\"  # flag"));
    assert!(dockerfile.contains("SWITCHBOARD_CONFIG=/etc/switchboard/switchboard.toml"));

    // The health check is the binary's own subcommand, asking /readyz on the exposed port.
    let health = exec_form(&dockerfile, "HEALTHCHECK");
    assert_eq!(health[0], "/usr/local/bin/switchboard");
    assert_eq!(health[1], "healthcheck");
    assert_eq!(health[2], "http://127.0.0.1:8080/readyz");
    let port = free_port();
    let _server = Process(
        Command::new(BINARY)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--no-media"])
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = health[2].replace(":8080/", &format!(":{port}/"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run(&["healthcheck", &url]).status.success() {
        assert!(Instant::now() < deadline, "the health check never passed");
        sleep(Duration::from_millis(100));
    }
}
