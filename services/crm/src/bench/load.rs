//! The two load shapes and what they measure.
//!
//! - Closed loop: each of N clients sends its next call when the last one
//!   returns; the rate it reaches is the target's saturation throughput.
//! - Open loop: calls are scheduled at a fixed total rate, spread over N
//!   clients; a call sent late because the one before it ran over its turn
//!   counts from its scheduled time, so queueing shows up (no coordinated
//!   omission). A call sent late only because the timer woke late (tokio's
//!   timers tick in milliseconds) counts from when it was sent: timer slack
//!   is the load generator's, not the target's.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use tonic::Code;

use super::{Mix, Operation, transport::Transport};

/// What one phase measured, per operation.
#[derive(Default)]
pub struct Measurement {
    pub elapsed: Duration,
    pub per_operation: HashMap<Operation, OperationStats>,
}

/// Latencies (microseconds) of successful calls, and failures by code.
pub struct OperationStats {
    pub latency_us: Histogram<u64>,
    pub errors: HashMap<Code, u64>,
}

impl Default for OperationStats {
    fn default() -> Self {
        // 1 µs to 60 s at 3 significant digits; these bounds are valid, so this cannot fail.
        let latency_us = Histogram::new_with_bounds(1, 60_000_000, 3)
            .unwrap_or_else(|_| unreachable!("static histogram bounds are valid"));
        OperationStats { latency_us, errors: HashMap::new() }
    }
}

impl OperationStats {
    fn record(&mut self, outcome: Result<(), Code>, latency: Duration) {
        match outcome {
            Ok(()) => {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000);
                let _ = self.latency_us.record(micros);
            }
            Err(code) => *self.errors.entry(code).or_default() += 1,
        }
    }

    fn merge(&mut self, other: &OperationStats) {
        let _ = self.latency_us.add(&other.latency_us);
        for (code, count) in &other.errors {
            *self.errors.entry(*code).or_default() += count;
        }
    }

    pub fn requests(&self) -> u64 {
        self.latency_us.len() + self.errors.values().sum::<u64>()
    }
}

impl Measurement {
    /// Successful calls per second, over every operation.
    pub fn throughput(&self) -> f64 {
        let ok: u64 = self.per_operation.values().map(|stats| stats.latency_us.len()).sum();
        ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn merge(&mut self, worker: &HashMap<Operation, OperationStats>) {
        for (operation, stats) in worker {
            self.per_operation.entry(*operation).or_default().merge(stats);
        }
    }
}

/// N clients, each calling as fast as its calls return, for `duration`.
pub async fn closed_loop(target: &Transport, mix: &Mix, clients: usize, duration: Duration) -> Measurement {
    let started = Instant::now();
    let deadline = started + duration;
    let workers = (0..clients).map(|client| {
        let (target, mix) = (target.clone(), mix.clone());
        tokio::spawn(async move {
            let mut stats: HashMap<Operation, OperationStats> = HashMap::new();
            let mut draw = client as u64;
            while Instant::now() < deadline {
                let operation = mix.pick(draw);
                draw += clients as u64;
                let sent = Instant::now();
                let outcome = operation.call(&target).await;
                stats.entry(operation).or_default().record(outcome, sent.elapsed());
            }
            stats
        })
    });
    collect(started, workers).await
}

/// Calls scheduled at `rate` per second in total, over N clients, for `duration`.
pub async fn open_loop(target: &Transport, mix: &Mix, clients: usize, duration: Duration, rate: f64) -> Measurement {
    let started = Instant::now();
    let per_client_interval = Duration::from_secs_f64(clients as f64 / rate);
    let calls_per_client = (duration.as_secs_f64() / per_client_interval.as_secs_f64()).ceil() as u64;
    let workers = (0..clients).map(|client| {
        let (target, mix) = (target.clone(), mix.clone());
        // Spread the clients' schedules over one interval.
        let offset = per_client_interval.mul_f64(client as f64 / clients as f64);
        tokio::spawn(async move {
            let mut stats: HashMap<Operation, OperationStats> = HashMap::new();
            for call in 0..calls_per_client {
                let scheduled = started + offset + per_client_interval.mul_f64(call as f64);
                let queued = Instant::now() >= scheduled;
                tokio::time::sleep_until(scheduled.into()).await;
                let counted_from = if queued { scheduled } else { Instant::now() };
                let operation = mix.pick(call * clients as u64 + client as u64);
                let outcome = operation.call(&target).await;
                stats.entry(operation).or_default().record(outcome, counted_from.elapsed());
            }
            stats
        })
    });
    collect(started, workers).await
}

async fn collect(
    started: Instant,
    workers: impl Iterator<Item = tokio::task::JoinHandle<HashMap<Operation, OperationStats>>>,
) -> Measurement {
    let mut measurement = Measurement::default();
    for worker in futures_util::future::join_all(workers).await {
        match worker {
            Ok(stats) => measurement.merge(&stats),
            Err(error) => tracing::warn!(%error, "a benchmark client failed"),
        }
    }
    measurement.elapsed = started.elapsed();
    measurement
}
