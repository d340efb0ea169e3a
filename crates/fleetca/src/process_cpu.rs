//! CPU time of a process from /proc, for the benchmarks' "CPU per request" figures.

use anyhow::{bail, Context};

/// User plus system CPU ticks of the process whose stat file is `stat_path`.
pub(crate) fn cpu_ticks(stat_path: &str) -> anyhow::Result<u64> {
    let text =
        std::fs::read_to_string(stat_path).with_context(|| format!("cannot read {stat_path}"))?;
    // Fields after the command name (which may contain spaces and parentheses): state is
    // field 3, utime field 14 and stime field 15, i.e. the 12th and 13th after ')'.
    let after = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("{stat_path} is not a stat file"))?;
    let mut times = after.split_whitespace().skip(11).map(str::parse::<u64>);
    match (times.next(), times.next()) {
        (Some(Ok(user)), Some(Ok(system))) => Ok(user + system),
        _ => bail!("{stat_path} has no CPU times"),
    }
}

/// Clock ticks per second (`getconf CLK_TCK`), 100 when that cannot be asked.
pub(crate) fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// CPU microseconds per request.
pub(crate) fn micros_per(ticks: u64, per_second: u64, requests: u64) -> Option<f64> {
    (requests > 0).then(|| ticks as f64 * 1e6 / per_second as f64 / requests as f64)
}
