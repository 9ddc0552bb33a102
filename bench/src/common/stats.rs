//! Latency samples and their markdown table rows.

use std::time::Duration;
// ---------------------------------------------------------------- statistics

#[derive(Clone, Default)]
pub struct Stats(pub Vec<Duration>);

impl Stats {
    pub fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort();
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i].as_secs_f64() * 1000.0
    }
    pub fn row(&self, name: &str) {
        println!(
            "| {name:<58} | {:>4} | {:>7.1} | {:>7.1} | {:>7.1} | {:>7.1} |",
            self.0.len(),
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.pct(1.0)
        );
    }
}

pub fn table_head() {
    println!(
        "| {:<58} | {:>4} | {:>7} | {:>7} | {:>7} | {:>7} |",
        "measurement", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    println!(
        "|{}|------|---------|---------|---------|---------|",
        "-".repeat(60)
    );
}
