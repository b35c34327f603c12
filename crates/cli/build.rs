//! Stamps the binary with the git revision it was built from, for `switchboard --version`:
//! `SWITCHBOARD_GIT_REV` when the build sets it (a container build has no `.git`), else
//! `git rev-parse --short HEAD`, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SWITCHBOARD_GIT_REV");
    let revision = std::env::var("SWITCHBOARD_GIT_REV")
        .ok()
        .filter(|rev| !rev.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SWITCHBOARD_GIT_REV={revision}");
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it names (a commit).
    for file in ["HEAD".to_owned()]
        .into_iter()
        .chain(git(&["symbolic-ref", "-q", "HEAD"]))
    {
        if let Some(path) = git(&["rev-parse", "--git-path", &file]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// `git ARGS`' trimmed output, or `None` outside a repository or without git.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}
