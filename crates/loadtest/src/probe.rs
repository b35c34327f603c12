//! What the kernel says about the server under load: the resident memory and CPU time of
//! each of its processes from `/proc/PID` (one switchboard, or the nodes of a cluster and
//! their Redis), and the machine's listen-queue overflow counters from `/proc/net/netstat`.
//! Linux only; elsewhere every reading is `None` and the report leaves the figure out.

use std::time::Instant;

use crate::MAX_SERVER_PIDS;

/// Clock ticks per second in `/proc/PID/stat` (USER_HZ). It is 100 on every Linux target
/// the bench runs on; reading it would need `sysconf`, which is unsafe to call.
const TICKS_PER_SECOND: f64 = 100.0;

/// The server's processes, by PID: one, or up to [`MAX_SERVER_PIDS`] (two nodes and their
/// Redis, say). A fixed array keeps it `Copy`, like the samples taken from it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe {
    pids: [u32; MAX_SERVER_PIDS],
    len: usize,
}

/// One reading of the memory and CPU time of every process of a [`Probe`], in its order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// Resident set size of all the processes together, bytes (`VmRSS`).
    pub(crate) rss_bytes: u64,
    processes: [Reading; MAX_SERVER_PIDS],
    len: usize,
    at: Instant,
}

/// One process's part of a [`Sample`].
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    pid: u32,
    rss_bytes: u64,
    /// User plus system CPU time so far, in clock ticks (`utime + stime`).
    cpu_ticks: u64,
}

/// What one process did between two samples.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProcessReading {
    pub(crate) pid: u32,
    /// `/proc/PID/comm`: `switchboard`, `redis-server`, ...
    pub(crate) name: String,
    pub(crate) rss_bytes: u64,
    pub(crate) cpu_cores: f64,
}

impl Probe {
    /// A probe for `pids`, or an error now if there are more than [`MAX_SERVER_PIDS`] or
    /// one of them cannot be read.
    pub(crate) fn new(pids: &[u32]) -> anyhow::Result<Probe> {
        anyhow::ensure!(
            (1..=MAX_SERVER_PIDS).contains(&pids.len()),
            "give 1 to {MAX_SERVER_PIDS} server PIDs per URL"
        );
        let mut probe = Probe {
            pids: [0; MAX_SERVER_PIDS],
            len: pids.len(),
        };
        for (slot, &pid) in probe.pids.iter_mut().zip(pids) {
            *slot = pid;
            read(pid).ok_or_else(|| anyhow::anyhow!("cannot read /proc/{pid}/status and stat"))?;
        }
        Ok(probe)
    }

    /// Reads every process's memory and CPU time now; `None` if one of them is gone.
    pub(crate) fn sample(&self) -> Option<Sample> {
        let mut sample = Sample {
            rss_bytes: 0,
            processes: [Reading::default(); MAX_SERVER_PIDS],
            len: self.len,
            at: Instant::now(),
        };
        for (slot, &pid) in sample.processes.iter_mut().zip(&self.pids[..self.len]) {
            *slot = read(pid)?;
            sample.rss_bytes = sample.rss_bytes.saturating_add(slot.rss_bytes);
        }
        sample.at = Instant::now();
        Some(sample)
    }
}

impl Sample {
    /// CPU cores all the processes together used on average between `earlier` and this
    /// sample.
    pub(crate) fn cores_since(&self, earlier: &Sample) -> f64 {
        self.each_since(earlier).iter().map(|p| p.cpu_cores).sum()
    }

    /// Each process's CPU cores between `earlier` and this sample, and its memory now.
    pub(crate) fn each_since(&self, earlier: &Sample) -> Vec<ProcessReading> {
        let seconds = self.at.duration_since(earlier.at).as_secs_f64();
        self.processes[..self.len]
            .iter()
            .zip(&earlier.processes[..earlier.len])
            .map(|(now, then)| {
                let ticks = now.cpu_ticks.saturating_sub(then.cpu_ticks);
                ProcessReading {
                    pid: now.pid,
                    name: comm(now.pid),
                    rss_bytes: now.rss_bytes,
                    cpu_cores: if seconds > 0.0 {
                        ticks as f64 / TICKS_PER_SECOND / seconds
                    } else {
                        0.0
                    },
                }
            })
            .collect()
    }
}

/// The CPU time of each of the server's threads whose name starts with `prefix` (the media
/// workers are `switchboard-media-N`, which the kernel cuts to `switchboard-med`), by thread
/// id, in clock ticks, with when it was read.
#[derive(Debug, Clone)]
pub(crate) struct Threads {
    ticks: Vec<(u32, u64)>,
    at: Instant,
}

impl Probe {
    /// Reads the CPU time of every thread of the server's processes named `prefix...`.
    pub(crate) fn threads(&self, prefix: &str) -> Threads {
        let mut ticks = Vec::new();
        for &pid in &self.pids[..self.len] {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let path = task.path();
                let named = std::fs::read_to_string(path.join("comm"))
                    .is_ok_and(|name| name.starts_with(prefix));
                let tid = task.file_name().to_str().and_then(|t| t.parse().ok());
                let cpu = std::fs::read_to_string(path.join("stat"))
                    .ok()
                    .and_then(|stat| cpu_ticks(&stat));
                if let (true, Some(tid), Some(cpu)) = (named, tid, cpu) {
                    ticks.push((tid, cpu));
                }
            }
        }
        ticks.sort_unstable();
        Threads {
            ticks,
            at: Instant::now(),
        }
    }
}

impl Threads {
    /// The cores each thread used since `earlier`, in thread-id order (the order the server
    /// started them), for the threads both readings saw.
    pub(crate) fn cores_since(&self, earlier: &Threads) -> Vec<f64> {
        let seconds = self.at.duration_since(earlier.at).as_secs_f64();
        if seconds <= 0.0 {
            return Vec::new();
        }
        self.ticks
            .iter()
            .filter_map(|&(tid, now)| {
                let (_, then) = earlier.ticks.iter().find(|(t, _)| *t == tid)?;
                Some(now.saturating_sub(*then) as f64 / TICKS_PER_SECOND / seconds)
            })
            .collect()
    }
}

fn read(pid: u32) -> Option<Reading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(Reading {
        pid,
        rss_bytes: vm_rss_kib(&status)?.saturating_mul(1024),
        cpu_ticks: cpu_ticks(&stat)?,
    })
}

/// The process's command name, or `?` once it is gone.
fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|name| name.trim_end().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
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
        let probe = Probe::new(&[std::process::id()]).unwrap();
        assert!(probe.sample().unwrap().rss_bytes > 0);
        assert!(listen_overflows().is_some());
    }

    #[test]
    fn reads_this_process_threads_by_name() {
        // The thread names itself as it starts: it says when it has.
        let (started, start) = std::sync::mpsc::channel();
        let (finish, finished) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::Builder::new()
            .name("probe-test-spin".to_owned())
            .spawn(move || {
                started.send(()).unwrap();
                finished.recv().unwrap_or_default();
            })
            .unwrap();
        start.recv().unwrap();
        let probe = Probe::new(&[std::process::id()]).unwrap();
        let before = probe.threads("probe-test-spin");
        assert_eq!(before.ticks.len(), 1, "{before:?}");
        finish.send(()).unwrap();
        worker.join().unwrap();
        // Gone by now: a thread the second reading does not see is left out.
        assert!(probe
            .threads("probe-test-spin")
            .cores_since(&before)
            .is_empty());
        assert!(probe.threads("no-such-thread").ticks.is_empty());
    }

    #[test]
    fn reads_several_processes_and_sums_them() {
        let me = std::process::id();
        let one = Probe::new(&[me]).unwrap().sample().unwrap();
        let probe = Probe::new(&[me, me]).unwrap();
        let before = probe.sample().unwrap();
        let after = probe.sample().unwrap();
        let each = after.each_since(&before);
        assert_eq!(each.len(), 2);
        assert!(each.iter().all(|p| p.pid == me && p.rss_bytes > 0));
        assert!(!each[0].name.is_empty());
        // Twice the same process: twice its memory (give or take what moved in between).
        assert!(after.rss_bytes >= one.rss_bytes);
        let sum: f64 = each.iter().map(|p| p.cpu_cores).sum();
        assert_eq!(after.cores_since(&before), sum);
        assert!(Probe::new(&[]).is_err());
        assert!(Probe::new(&[me; MAX_SERVER_PIDS + 1]).is_err());
    }
}
