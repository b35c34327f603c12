//! Kill: how long a cluster takes to tell a room that a node died. A watcher joins a room on
//! the survivor (the split target's first node), `--peers` members join it on the victim
//! (the second), and once the watcher has heard every one of them join, the bench sends the
//! victim SIGKILL and times each leave notice the watcher gets, to the last. No socket is
//! closed politely: the victim's process is simply gone, as after a crash or the OOM killer,
//! so the survivor learns of it only when the victim's lease runs out.
//!
//! The victim is named by PID and must be a process called `switchboard`: the bench kills
//! nothing else. Restarting it for the next kill is the caller's business
//! (`scripts/cluster-kill-bench.sh`).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use futures_util::StreamExt;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use super::{nanos, Bench, SETUP_TIMEOUT};
use crate::client::{self, Ws};
use crate::report::{Percentiles, Recorder, Report};
use crate::KillArgs;

/// The process name a victim must have.
const VICTIM_NAME: &str = "switchboard";

/// Kill: a room across two nodes, one node killed, the survivor's leave notices timed.
pub(super) async fn kill(bench: &Bench<'_>, args: &KillArgs) -> anyhow::Result<Report> {
    let victim_name = std::fs::read_to_string(format!("/proc/{}/comm", args.victim_pid))
        .with_context(|| format!("no process {}", args.victim_pid))?;
    ensure!(
        victim_name.trim_end() == VICTIM_NAME,
        "--victim-pid {} is {:?}, not {VICTIM_NAME}: the bench kills nothing else",
        args.victim_pid,
        victim_name.trim_end()
    );
    let (survivor, victim) = (bench.target.node(0), bench.target.node(1));
    let dialect = bench.common.dialect;
    let sources = bench.common.sources;
    let room = format!("kill-{}", bench.nonce);
    bench.counters.set_phase("connecting");
    let (mut watcher, peers) = timeout(SETUP_TIMEOUT, async {
        let watcher = survivor
            .open(dialect, survivor.source(0, sources), &room, "watcher")
            .await
            .context("the watcher, on the survivor")?;
        bench.counters.opened.fetch_add(1, Relaxed);
        let mut peers: Vec<Ws> = Vec::new();
        for index in 1..=args.peers {
            let slot = usize::try_from(index).unwrap_or(usize::MAX);
            let name = format!("v{index}");
            let ws = victim
                .open(dialect, victim.source(slot, sources), &room, &name)
                .await
                .with_context(|| format!("member {name}, on the victim"))?;
            bench.counters.opened.fetch_add(1, Relaxed);
            peers.push(ws);
        }
        anyhow::Ok((watcher, peers))
    })
    .await
    .with_context(|| format!("setting up the room took over {SETUP_TIMEOUT:?}"))??;

    // Every member the watcher has heard join is one it must hear leave.
    let mut joined = 0;
    timeout(SETUP_TIMEOUT, async {
        while joined < args.peers {
            let text = next_notice(&mut watcher).await?;
            if is_notice(&text, JOIN_NOTICES) {
                joined += 1;
            }
        }
        anyhow::Ok(())
    })
    .await
    .with_context(|| {
        format!(
            "the watcher heard {joined} of {} joins within {SETUP_TIMEOUT:?}",
            args.peers
        )
    })??;

    bench.counters.set_phase("killing");
    let killed_at = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-KILL", &args.victim_pid.to_string()])
        .status()
        .context("running kill")?;
    ensure!(status.success(), "kill -KILL {} failed", args.victim_pid);
    bench.counters.set_phase("waiting for leave notices");
    let latency = Recorder::new();
    let mut left = 0;
    let mut last_ns = 0;
    let waited = timeout(args.wait, async {
        while left < args.peers {
            let text = next_notice(&mut watcher).await?;
            if is_notice(&text, LEAVE_NOTICES) {
                last_ns = nanos(killed_at.elapsed());
                latency.record(0, last_ns);
                left += 1;
                bench.counters.received.fetch_add(1, Relaxed);
            }
        }
        anyhow::Ok(())
    })
    .await;
    drop(peers); // their node is gone; nothing to close
    let _ = timeout(client::CONNECT_TIMEOUT, watcher.close(None)).await;
    match waited {
        Ok(result) => result?,
        Err(_) => bench.counters.error(format_args!(
            "{} of {} leave notices within {:?} of the kill",
            left, args.peers, args.wait
        )),
    }

    let mut report = bench.report("kill", None, None);
    let histogram = latency.merged();
    report.expected = args.peers;
    report.received = left;
    report.operations = left;
    report.measured_s = last_ns as f64 / 1e9;
    report.latency_us = Percentiles::of(&histogram);
    report.histogram = Some(histogram);
    report.params.peers = Some(args.peers);
    report.params.duration_s = Some(args.wait.as_secs_f64());
    Ok(report)
}

/// How each dialect the bench speaks says a member joined or left.
const JOIN_NOTICES: [&str; 2] = [r#"{"type":"user-joined""#, r#"{"type":"peer_joined""#];
const LEAVE_NOTICES: [&str; 2] = [r#"{"type":"user-left""#, r#"{"type":"peer_left""#];

fn is_notice(text: &str, notices: [&str; 2]) -> bool {
    notices.iter().any(|notice| text.starts_with(notice))
}

/// The watcher's next text frame; an error frame or a closed socket ends the run.
async fn next_notice(ws: &mut Ws) -> anyhow::Result<String> {
    while let Some(frame) = ws.next().await {
        if let Message::Text(text) = frame? {
            if client::is_error(&text) {
                bail!("the watcher got {}", text.as_str());
            }
            return Ok(text.as_str().to_owned());
        }
    }
    bail!("the survivor closed the watcher's socket")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_of_both_dialects() {
        assert!(is_notice(
            r#"{"type":"user-left","data":{"user":"v1"}}"#,
            LEAVE_NOTICES
        ));
        assert!(is_notice(
            r#"{"type":"peer_left","from":"v1","payload":{}}"#,
            LEAVE_NOTICES
        ));
        assert!(is_notice(
            r#"{"type":"user-joined","data":{"user":"v1"}}"#,
            JOIN_NOTICES
        ));
        assert!(!is_notice(
            r#"{"type":"user-joined","data":{"user":"v1"}}"#,
            LEAVE_NOTICES
        ));
    }
}
