//! Log lines and traces: the subscriber every command logs through and, when
//! `--otlp-endpoint` is set, an OpenTelemetry layer that exports spans over OTLP/HTTP.
//!
//! The spans the crates open for requests, database calls, cache tiers, queue hops and saga
//! steps are at DEBUG level, and the log filter (default `info`) never enables them for the
//! log lines. Without an endpoint nothing else wants them, so each costs one cached callsite
//! check; with one, the OpenTelemetry layer has its own filter that takes the project's spans
//! whatever the log filter says.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{FilterFn, LevelFilter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::LogFormat;

/// Where spans go: `basis <command> --otlp-endpoint URL`.
#[derive(Debug, Clone, clap::Args)]
pub struct OtlpArgs {
    /// Export traces over OTLP/HTTP (protobuf) to this collector, e.g.
    /// `http://127.0.0.1:4318` (`/v1/traces` is added unless the path already ends so).
    /// Off when unset. `OTEL_EXPORTER_OTLP_HEADERS` adds headers (e.g. an API key).
    #[arg(long, env = "BASIS_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,

    /// The `service.name` the exported spans carry (e.g. `basis-worker` for workers).
    #[arg(
        long,
        env = "BASIS_OTLP_SERVICE_NAME",
        default_value = "basis",
        global = true
    )]
    pub otlp_service_name: String,
}

/// What has to be flushed at exit.
#[must_use = "call shutdown at exit, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered and stops the exporter's thread.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(err) = provider.shutdown()
        {
            eprintln!("warning: the last spans could not be exported: {err}");
        }
    }
}

/// The log filter when `RUST_LOG` is not set: the project at INFO, and the libraries' own
/// reports only when something failed (the OpenTelemetry SDK's exports among them). lapin
/// is off: it logs every channel the broker closes as an ERROR, and the deduplication
/// markers are refused that way as their normal answer; the queue backend's callers log the
/// failures that matter (a flush or an enqueue that could not reach the broker).
const DEFAULT_FILTER: &str = "info,sqlx=warn,lapin=off,opentelemetry=warn,opentelemetry_sdk=warn";

/// Installs the global subscriber: log lines on stderr in `format`, and the span exporter
/// when `otlp` names an endpoint. Call it before the async runtime starts: the exporter's
/// blocking HTTP client must not be built inside one.
pub fn init(format: LogFormat, otlp: &OtlpArgs) -> anyhow::Result<Telemetry> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let endpoint = otlp
        .otlp_endpoint
        .as_deref()
        .filter(|endpoint| !endpoint.trim().is_empty());
    let Some(endpoint) = endpoint else {
        // Log lines only, the filter global: what is filtered out costs nothing anywhere.
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi);
        match format {
            LogFormat::Text => builder.init(),
            LogFormat::Json => builder.json().flatten_event(true).init(),
        }
        return Ok(Telemetry { provider: None });
    };
    // Two consumers with filters of their own: the log filter for the lines, and
    // `traced()` for the spans, whatever the log filter says.
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let lines = match format {
        LogFormat::Text => lines.with_filter(filter).boxed(),
        LogFormat::Json => lines.json().flatten_event(true).with_filter(filter).boxed(),
    };

    let url = traces_url(endpoint)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url.clone())
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|err| anyhow::anyhow!("cannot build the OTLP exporter for {url}: {err}"))?;
    let resource = Resource::builder()
        .with_service_name(otlp.otlp_service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    // W3C `traceparent` in and out: HTTP requests and the jobs they enqueue.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("basis");
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_filter(traced());
    tracing_subscriber::registry()
        .with(lines)
        .with(spans)
        .init();
    tracing::info!(endpoint = %url, service = %otlp.otlp_service_name, "exporting traces");
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// What the OpenTelemetry layer takes: the project's own spans up to DEBUG (other crates'
/// spans, the exporter's HTTP client's among them, would only add noise or feed back), and
/// events up to INFO from anywhere, which become events of the span they happen in (a slow
/// statement's warning on its request, say).
fn traced() -> FilterFn<impl Fn(&tracing::Metadata<'_>) -> bool> {
    FilterFn::new(|meta: &tracing::Metadata<'_>| {
        if meta.is_span() {
            *meta.level() <= Level::DEBUG && meta.target().starts_with("basis")
        } else {
            *meta.level() <= Level::INFO
        }
    })
    .with_max_level_hint(LevelFilter::DEBUG)
}

/// The URL spans are posted to: the endpoint as an OTLP base URL (`/v1/traces` added), or
/// as given when its path already ends in `/v1/traces`.
fn traces_url(endpoint: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(endpoint.trim())
        .map_err(|err| anyhow::anyhow!("--otlp-endpoint {endpoint:?} is not a URL: {err}"))?;
    anyhow::ensure!(
        matches!(parsed.scheme(), "http" | "https"),
        "--otlp-endpoint must be an http:// or https:// URL (OTLP over HTTP)"
    );
    let base = parsed.as_str();
    if parsed.path().ends_with("/v1/traces") {
        Ok(base.to_owned())
    } else {
        Ok(format!("{}/v1/traces", base.trim_end_matches('/')))
    }
}

#[cfg(test)]
mod tests {
    use super::traces_url;

    #[test]
    fn the_endpoint_is_a_base_url_unless_it_names_the_traces_path() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example/prefix/").unwrap(),
            "https://otel.example/prefix/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/v1/traces").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert!(traces_url("collector:4317").is_err());
        assert!(traces_url("grpc://collector:4317").is_err());
    }
}
