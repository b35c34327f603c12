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
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it names (a commit),
    // which lives in its own file or, once git packs it, in packed-refs. Only files that exist
    // are watched: cargo reruns a build script on every build for a missing one.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for file in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(path) = git(&["rev-parse", "--git-path", file]) {
            if std::path::Path::new(&path).exists() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
}

/// `git ARGS`' trimmed output, or `None` outside a repository or without git.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}
