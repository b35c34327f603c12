//! What the kernel says about the server under load: its resident memory and CPU time from
//! `/proc/PID`, and the machine's listen-queue overflow counters from `/proc/net/netstat`.
//! Linux only; elsewhere every reading is `None` and the report leaves the figure out.

use std::time::Instant;

/// Clock ticks per second in `/proc/PID/stat` (USER_HZ). It is 100 on every Linux target
/// the bench runs on; reading it would need `sysconf`, which is unsafe to call.
const TICKS_PER_SECOND: f64 = 100.0;

/// The server process, by PID.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    pid: u32,
}

/// One reading of the server's memory and CPU time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Resident set size, bytes (`VmRSS`).
    pub(crate) rss_bytes: u64,
    /// User plus system CPU time so far, in clock ticks (`utime + stime`).
    cpu_ticks: u64,
    at: Instant,
}

impl Probe {
    /// A probe for `pid`, or an error now if that process cannot be read.
    pub(crate) fn new(pid: u32) -> anyhow::Result<Probe> {
        let probe = Probe { pid };
        probe
            .sample()
            .ok_or_else(|| anyhow::anyhow!("cannot read /proc/{pid}/status and stat"))?;
        Ok(probe)
    }

    /// Reads memory and CPU time now; `None` if the process is gone.
    pub(crate) fn sample(&self) -> Option<Sample> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        Some(Sample {
            rss_bytes: vm_rss_kib(&status)?.saturating_mul(1024),
            cpu_ticks: cpu_ticks(&stat)?,
            at: Instant::now(),
        })
    }
}

impl Sample {
    /// CPU cores the process used on average between `earlier` and this sample.
    pub(crate) fn cores_since(&self, earlier: &Sample) -> f64 {
        let seconds = self.at.duration_since(earlier.at).as_secs_f64();
        if seconds <= 0.0 {
            return 0.0;
        }
        let ticks = self.cpu_ticks.saturating_sub(earlier.cpu_ticks);
        ticks as f64 / TICKS_PER_SECOND / seconds
    }
}

/// The kernel's count of connections dropped because a listen queue was full
/// (`TcpExt: ListenOverflows`), for the whole network namespace.
pub(crate) fn listen_overflows() -> Option<u64> {
    let netstat = std::fs::read_to_string("/proc/net/netstat").ok()?;
    tcp_ext(&netstat, "ListenOverflows")
}

fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `utime + stime` from `/proc/PID/stat`: fields 14 and 15, counted after the `)` that ends
/// the command name (which may itself contain spaces and parentheses).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = after_name.split_whitespace().skip(11); // field 3 is the first here
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `/proc/net/netstat` holds pairs of lines: `TcpExt: names...` then `TcpExt: values...`.
fn tcp_ext(netstat: &str, key: &str) -> Option<u64> {
    let mut lines = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let names = lines.next()?;
    let values = lines.next()?;
    let index = names.split_whitespace().position(|name| name == key)?;
    values.split_whitespace().nth(index)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_formats() {
        assert_eq!(
            vm_rss_kib("Name:\tx\nVmRSS:\t   12345 kB\nVmData: 1 kB\n"),
            Some(12345)
        );
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0";
        assert_eq!(cpu_ticks(stat), Some(300));
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 7 9\n";
        assert_eq!(tcp_ext(netstat, "ListenOverflows"), Some(7));
    }

    #[test]
    fn reads_this_process() {
        let probe = Probe::new(std::process::id()).unwrap();
        assert!(probe.sample().unwrap().rss_bytes > 0);
        assert!(listen_overflows().is_some());
    }
}
