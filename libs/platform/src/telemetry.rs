//! Telemetry, split into build and install.
//!
//! [`Telemetry::build`] makes the meter provider (Prometheus always, OTLP when
//! configured) and the tracer provider (OTLP when configured) without touching
//! global state. [`Telemetry::install_subscriber`] installs the global
//! `tracing` subscriber: only `main` calls it. [`Telemetry::shutdown`] flushes
//! what is buffered before the process exits.

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, metrics::SdkMeterProvider, trace::SdkTracerProvider};
use std::io::IsTerminal;
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{Config, LogFormat};

/// The process's meter and tracer providers and its Prometheus registry.
#[derive(Clone)]
pub struct Telemetry {
    /// What `/metrics` serves.
    pub registry: prometheus::Registry,
    pub meter_provider: SdkMeterProvider,
    tracer_provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Builds the providers; exports by OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
    pub fn build(config: &Config) -> anyhow::Result<Telemetry> {
        let registry = prometheus::Registry::new();
        let prometheus_reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .context("building the Prometheus exporter")?;
        let mut meters = SdkMeterProvider::builder().with_reader(prometheus_reader);
        let mut tracer_provider = None;
        if let Some(otlp) = &config.otlp {
            let resource = Resource::builder().with_service_name(otlp.service_name.clone()).build();
            let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(&otlp.endpoint)
                .build()
                .context("building the OTLP metric exporter")?;
            meters = meters.with_periodic_exporter(metric_exporter).with_resource(resource.clone());
            let span_exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(&otlp.endpoint)
                .build()
                .context("building the OTLP span exporter")?;
            tracer_provider =
                Some(SdkTracerProvider::builder().with_batch_exporter(span_exporter).with_resource(resource).build());
        }
        Ok(Telemetry { registry, meter_provider: meters.build(), tracer_provider })
    }

    /// Telemetry that exports nothing but `/metrics`, for tests.
    pub fn for_tests() -> Telemetry {
        let registry = prometheus::Registry::new();
        let meter_provider = match opentelemetry_prometheus::exporter().with_registry(registry.clone()).build() {
            Ok(reader) => SdkMeterProvider::builder().with_reader(reader).build(),
            Err(_) => SdkMeterProvider::builder().build(),
        };
        Telemetry { registry, meter_provider, tracer_provider: None }
    }

    /// Installs the global `tracing` subscriber: JSON or pretty logs on stderr, filtered
    /// by `CRM_LOG`, plus spans (info and above) to OTLP when configured. Call once, from `main`.
    pub fn install_subscriber(&self, config: &Config) -> anyhow::Result<()> {
        let filter = EnvFilter::try_new(&config.log_filter)
            .with_context(|| format!("CRM_LOG {:?} is not a valid log filter", config.log_filter))?;
        let json = match config.log_format {
            LogFormat::Json => true,
            LogFormat::Pretty => false,
            LogFormat::Auto => !std::io::stderr().is_terminal(),
        };
        let logs = if json {
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_writer(std::io::stderr)
                .boxed()
        } else {
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed()
        };
        // Spans go out at info whatever `CRM_LOG` keeps of the logs: quieter
        // logs must not cost the traces.
        let traces = self.tracer_provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("crm"))
                .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
        });
        tracing_subscriber::registry()
            .with(logs.with_filter(filter))
            .with(traces)
            .try_init()
            .context("a tracing subscriber is installed already")
    }

    /// Flushes buffered spans and metrics.
    pub fn shutdown(&self) {
        if let Some(provider) = &self.tracer_provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "flushing traces failed");
        }
        if let Err(error) = self.meter_provider.shutdown() {
            tracing::debug!(%error, "flushing metrics failed");
        }
    }
}
