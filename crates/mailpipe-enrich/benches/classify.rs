//! `make bench`: user agents classified per second on one core (the normalize stage does it
//! for every open and click), over a mix of email clients, proxies and browsers. Reports,
//! never asserts.

use std::time::{Duration, Instant};

use mailpipe_enrich::{classify_user_agent, machine_open};

const AGENTS: [&str; 8] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0",
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.5.0",
];

fn main() {
    let run_for = Duration::from_millis(800);
    let started = Instant::now();
    let mut done = 0u64;
    while started.elapsed() < run_for {
        for agent in AGENTS {
            std::hint::black_box(classify_user_agent(agent));
            std::hint::black_box(machine_open(Some(agent), Some("198.51.100.7"), None));
            done += 1;
        }
    }
    let per_s = done as f64 / started.elapsed().as_secs_f64();
    println!(
        "enrich: {per_s:.0} user agents classified (with a machine-open verdict) per second, one core ({:.1} µs each)",
        1e6 / per_s
    );
}
