//! How every benchmark reports: the machine, the inputs, a table, then `BENCH <name> <value>`
//! lines that tools can grep.

use std::fmt::Write as _;

/// One line about the machine: CPU model, cores, load average at the start.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split(':').nth(1)))
        .map(str::trim)
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("{model}, {cores} cores, load average {}", load.join(" "))
}

/// Collects `BENCH` figures and prints them last.
#[derive(Default)]
pub struct Figures(Vec<(String, f64)>);

impl Figures {
    pub fn add(&mut self, name: &str, value: f64) {
        self.0.push((name.to_string(), value));
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, value) in &self.0 {
            let _ = writeln!(out, "BENCH {name} {value:.4}");
        }
        out
    }
}

/// A target check printed under the table: "PASS"/"MISS" with the numbers behind it.
pub fn verdict(label: &str, ok: bool, detail: String) -> String {
    format!("  [{}] {label}: {detail}", if ok { "PASS" } else { "MISS" })
}
