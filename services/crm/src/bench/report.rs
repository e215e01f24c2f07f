//! The benchmark's table and verdicts.

use super::{TargetResult, load::Measurement};

/// The targets: at half of saturation the gateway adds under 0.5 ms
/// p50 and 2 ms p99; at saturation it keeps at least 70% of direct throughput.
const MAX_ADDED_P50_MS: f64 = 0.5;
const MAX_ADDED_P99_MS: f64 = 2.0;
const MIN_THROUGHPUT_SHARE: f64 = 0.70;

/// `half`: the fixed rate is half of the gateway's saturation (what the overhead targets are stated at).
pub fn print(results: &[TargetResult], rate: f64, half: bool) {
    println!(
        "{:<11} {:<8} {:<12} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8}  errors",
        "phase", "target", "method", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for result in results {
        rows("saturation", result.name, &result.saturation);
    }
    for result in results {
        rows(&format!("{rate:.0}/s"), result.name, &result.half_load);
    }
    let (Some(gateway), Some(direct)) =
        (results.iter().find(|r| r.name == "gateway"), results.iter().find(|r| r.name == "direct"))
    else {
        return;
    };
    let share = gateway.saturation.throughput() / direct.saturation.throughput().max(f64::EPSILON);
    println!(
        "gateway throughput at saturation: {:.0}/s vs {:.0}/s direct = {:.1}% (target >= {:.0}%: {})",
        gateway.saturation.throughput(),
        direct.saturation.throughput(),
        share * 100.0,
        MIN_THROUGHPUT_SHARE * 100.0,
        verdict(share >= MIN_THROUGHPUT_SHARE)
    );
    let added_p50 = percentile_ms(&gateway.half_load, 50.0) - percentile_ms(&direct.half_load, 50.0);
    let added_p99 = percentile_ms(&gateway.half_load, 99.0) - percentile_ms(&direct.half_load, 99.0);
    if !half {
        println!(
            "gateway overhead at {rate:.0}/s: p50 {added_p50:+.3} ms, p99 {added_p99:+.3} ms (the targets are stated at half of saturation)"
        );
        return;
    }
    println!(
        "gateway overhead at {rate:.0}/s (half of its saturation): p50 {added_p50:+.3} ms (target < {MAX_ADDED_P50_MS}: {}), p99 {added_p99:+.3} ms (target < {MAX_ADDED_P99_MS}: {})",
        verdict(added_p50 < MAX_ADDED_P50_MS),
        verdict(added_p99 < MAX_ADDED_P99_MS)
    );
}

fn rows(phase: &str, target: &str, measurement: &Measurement) {
    let mut operations: Vec<_> = measurement.per_operation.iter().collect();
    operations.sort_by_key(|(operation, _)| operation.name());
    for (operation, stats) in operations {
        let ms = |quantile: f64| stats.latency_us.value_at_quantile(quantile) as f64 / 1000.0;
        let errors: Vec<String> = stats.errors.iter().map(|(code, count)| format!("{code:?}={count}")).collect();
        println!(
            "{:<11} {:<8} {:<12} {:>9} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3}  {}",
            phase,
            target,
            operation.name(),
            stats.requests(),
            stats.latency_us.len() as f64 / measurement.elapsed.as_secs_f64().max(f64::EPSILON),
            ms(0.50),
            ms(0.90),
            ms(0.99),
            stats.latency_us.max() as f64 / 1000.0,
            if errors.is_empty() { "none".to_string() } else { errors.join(" ") }
        );
    }
}

/// The `percentile` latency over every operation of `measurement`, in ms.
fn percentile_ms(measurement: &Measurement, percentile: f64) -> f64 {
    let mut all: Option<hdrhistogram::Histogram<u64>> = None;
    for stats in measurement.per_operation.values() {
        match &mut all {
            Some(histogram) => {
                let _ = histogram.add(&stats.latency_us);
            }
            None => all = Some(stats.latency_us.clone()),
        }
    }
    all.map(|histogram| histogram.value_at_percentile(percentile) as f64 / 1000.0).unwrap_or(0.0)
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}
