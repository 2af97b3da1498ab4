//! What a process costs, read from `/proc`: resident memory (`VmRSS` in
//! `/proc/PID/status`) and CPU time: the sum over its threads of the nanoseconds each has
//! run (`/proc/PID/task/TID/schedstat`), or where the kernel has no schedstat,
//! `utime + stime` from `/proc/PID/stat` (10 ms ticks: too coarse to split a round's CPU
//! over a thousand collectors). The thread sum misses threads that exited in between,
//! which for a replica (long-lived runtime threads) is none.

use std::time::Duration;

use anyhow::Context;

/// Resident memory and CPU time used so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

/// Reads `pid`'s usage; `ticks_per_second` is the kernel's `USER_HZ` (see [`clock_ticks`]).
pub fn usage(pid: u32, ticks_per_second: u64) -> anyhow::Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let rss_bytes = parse_rss(&status).context("no VmRSS in /proc/PID/status")?;
    if let Some(cpu) = threads_run_time(pid) {
        return Ok(Usage { rss_bytes, cpu });
    }
    let ticks = parse_cpu_ticks(&stat).context("cannot parse /proc/PID/stat")?;
    let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(ticks_per_second.max(1));
    Ok(Usage {
        rss_bytes,
        cpu: Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)),
    })
}

/// The sum of every thread's run time (the first field of its schedstat), if readable.
fn threads_run_time(pid: u32) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut read = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        // A thread that exited since the listing is simply not counted.
        let Ok(entry) = entry else { continue };
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        let nanos: u64 = text.split_whitespace().next()?.parse().ok()?;
        total = total.saturating_add(nanos);
        read += 1;
    }
    (read > 0).then(|| Duration::from_nanos(total))
}

/// The kernel's clock ticks per second for `/proc/PID/stat` (`getconf CLK_TCK`); 100,
/// Linux's fixed `USER_HZ`, if it cannot be asked.
#[must_use]
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// `VmRSS:   1234 kB` in bytes.
fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// `utime + stime` (fields 14 and 15). The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// The load averages from `/proc/loadavg` (1, 5 and 15 minutes), if readable.
#[must_use]
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(
            parse_rss("Name:\tx\nVmRSS:\t    2048 kB\nVmSwap: 0 kB\n"),
            Some(2 * 1024 * 1024)
        );
        assert_eq!(parse_rss("Name: x\n"), None);
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 4 0";
        assert_eq!(parse_cpu_ticks(stat), Some(10));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn reads_this_process() {
        let usage = usage(std::process::id(), clock_ticks()).expect("usage");
        assert!(usage.rss_bytes > 0);
        assert!(threads_run_time(std::process::id()).is_some_and(|t| t > Duration::ZERO));
        assert!(load_average().is_some());
    }
}
