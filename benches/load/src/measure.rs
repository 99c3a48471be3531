//! What the scenarios measure with: the parity fixture's texts as chat lines, and the CPU
//! time a process has used (from `/proc`).

use std::path::Path;

use anyhow::{Context, bail};

/// The texts of the parity fixture at `path` that `keep` accepts (the load scenarios use
/// them as chat lines).
pub(crate) fn fixture_texts(
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> anyhow::Result<Vec<String>> {
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path).with_context(|| path.display().to_string())?,
    )?;
    let texts: Vec<String> = json["cases"]
        .as_array()
        .context("fixture cases")?
        .iter()
        .filter_map(|c| c["text"].as_str())
        .filter(|t| keep(t))
        .map(String::from)
        .collect();
    if texts.is_empty() {
        bail!("no texts in {}", path.display());
    }
    Ok(texts)
}

/// CPU time (user + system, all threads) process `pid` has used so far, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100);
    Some(ticks / per_second as f64)
}
