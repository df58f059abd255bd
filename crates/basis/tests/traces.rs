//! Traces as an operator collects them: `basis serve` and `basis worker` started with
//! `--otlp-endpoint` post their spans to a real OTLP/HTTP receiver run by the test, which
//! decodes them; and `--slow-query-ms` puts slow statements in the log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::header::CONTENT_TYPE;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AttrValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::process::Command;

mod support;

use support::{
    Basis, access_token, basis, call, client, create_user, fresh_postgres_database,
    postgres_admin_url, sign_up,
};

const PASSWORD: &str = "velvet otter juggles nine lanterns";

/// One span as received, with the `service.name` of the process that sent it.
#[derive(Debug, Clone)]
struct Exported {
    service: String,
    span: Span,
}

/// An OTLP/HTTP receiver on a free port: `POST /v1/traces` with a protobuf body.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Exported>>>,
}

impl Receiver {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body.as_ref())
                        .expect("an OTLP protobuf body");
                    let mut kept = kept.lock().expect("span lock");
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .as_ref()
                            .and_then(|r| text_of(&r.attributes, "service.name"))
                            .unwrap_or_default();
                        for scope in resource.scope_spans {
                            kept.extend(scope.spans.into_iter().map(|span| Exported {
                                service: service.clone(),
                                span,
                            }));
                        }
                    }
                    (
                        [(CONTENT_TYPE, "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("the receiver runs") });
        Self { url, spans }
    }

    /// `basis <args>` exporting here as `service`, sending each batch within 100 ms.
    fn command(&self, dir: &std::path::Path, service: &str, args: &[&str]) -> Command {
        let mut command = basis(dir, None);
        command
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .args(["--otlp-endpoint", &self.url])
            .args(["--otlp-service-name", service])
            .args(args);
        command
    }

    /// Polls the spans received until `find` answers, for at most 30 s.
    async fn wait_for<T>(&self, what: &str, find: impl Fn(&[Exported]) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(found) = find(&self.spans.lock().expect("span lock")) {
                return found;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} within 30 s; received: {:#?}",
                names(&self.spans.lock().expect("span lock"))
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `basis serve` on a free port, exporting to `receiver` as `service`.
async fn traced_serve(receiver: &Receiver, dir: &std::path::Path, extra: &[&str]) -> Basis {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Basis::listening(receiver.command(dir, "basis", &args)).await
}

fn names(spans: &[Exported]) -> Vec<String> {
    spans
        .iter()
        .map(|e| format!("{}: {}", e.service, e.span.name))
        .collect()
}

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a AttrValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

fn text_of(attributes: &[KeyValue], key: &str) -> Option<String> {
    match attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?
    {
        AttrValue::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

fn text(span: &Span, key: &str) -> Option<String> {
    text_of(&span.attributes, key)
}

fn int(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        AttrValue::IntValue(n) => Some(*n),
        _ => None,
    }
}

fn flag(span: &Span, key: &str) -> Option<bool> {
    match attr(span, key)? {
        AttrValue::BoolValue(b) => Some(*b),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `span` descends from `ancestor` through spans received from the same trace.
fn descends_from(spans: &[Exported], span: &Span, ancestor: &Span) -> bool {
    let mut parent = span.parent_span_id.clone();
    for _ in 0..32 {
        if parent.is_empty() || span.trace_id != ancestor.trace_id {
            return false;
        }
        if parent == ancestor.span_id {
            return true;
        }
        match spans
            .iter()
            .find(|e| e.span.trace_id == span.trace_id && e.span.span_id == parent)
        {
            Some(up) => parent = up.span.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

/// The server span of the request to `path` (its concrete path), if received.
fn request_span(spans: &[Exported], method: &str, path: &str) -> Option<Span> {
    spans
        .iter()
        .find(|e| {
            e.span.kind == SpanKind::Server as i32
                && text(&e.span, "url.path").as_deref() == Some(path)
                && text(&e.span, "http.request.method").as_deref() == Some(method)
        })
        .map(|e| e.span.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_a_server_span_named_by_its_route_with_its_status_database_and_cache_calls() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = traced_serve(&receiver, dir.path(), &[]).await;
    let client = client();

    let created = client
        .post(server.url("/shorten"))
        .json(&json!({"longUrl": "https://example.com/traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let code = created.json::<Value>().await.unwrap()["shortCode"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        let followed = client
            .get(server.url(&format!("/{code}")))
            .send()
            .await
            .unwrap();
        assert_eq!(followed.status(), 301);
    }
    let missing = client
        .get(server.url("/no-such-code"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let post = receiver
        .wait_for("span of POST /shorten", |s| {
            request_span(s, "POST", "/shorten")
        })
        .await;
    assert_eq!(post.name, "POST /shorten");
    assert_eq!(text(&post, "http.route").as_deref(), Some("/shorten"));
    assert_eq!(
        int(&post, "http.response.status_code"),
        Some(201),
        "{:#?}",
        post.attributes
    );

    let path = format!("/{code}");
    let redirects = receiver
        .wait_for("spans of both redirects", |s| {
            let found: Vec<Span> = s
                .iter()
                .filter(|e| {
                    e.span.kind == SpanKind::Server as i32
                        && text(&e.span, "url.path").as_deref() == Some(path.as_str())
                })
                .map(|e| e.span.clone())
                .collect();
            (found.len() == 2).then_some(found)
        })
        .await;
    for redirect in &redirects {
        assert_eq!(redirect.name, "GET /{code}", "named by the route template");
        assert_eq!(text(redirect, "http.route").as_deref(), Some("/{code}"));
        assert_eq!(int(redirect, "http.response.status_code"), Some(301));
        assert_eq!(redirect.parent_span_id, Vec::<u8>::new(), "a trace's root");
    }
    assert_ne!(
        redirects[0].trace_id, redirects[1].trace_id,
        "each request its own trace"
    );

    // The database: the create's insert is a client span under its request.
    let spans = receiver.spans.lock().unwrap().clone();
    let insert = spans.iter().find(|e| {
        e.span.name.starts_with("db ")
            && e.span.kind == SpanKind::Client as i32
            && text(&e.span, "db.system.name").as_deref() == Some("sqlite")
            && descends_from(&spans, &e.span, &post)
    });
    assert!(
        insert.is_some(),
        "a database span under POST /shorten: {:#?}",
        names(&spans)
    );

    // The cache: a redirect of a cached link hits L1 (the second one at the latest) ...
    let l1_hit = redirects.iter().any(|redirect| {
        spans.iter().any(|e| {
            e.span.name == "cache links l1"
                && flag(&e.span, "cache.hit") == Some(true)
                && descends_from(&spans, &e.span, redirect)
        })
    });
    assert!(l1_hit, "an L1 hit under a redirect: {:#?}", names(&spans));
    // ... and an unknown code misses L1 and is loaded from the database.
    let unknown = receiver
        .wait_for("span of the unknown code", |s| {
            request_span(s, "GET", "/no-such-code")
        })
        .await;
    assert_eq!(int(&unknown, "http.response.status_code"), Some(404));
    let spans = receiver
        .wait_for("the unknown code's cache load", |s| {
            s.iter()
                .any(|e| e.span.name == "cache links load" && e.span.trace_id == unknown.trace_id)
                .then(|| s.to_vec())
        })
        .await;
    let under = |name: &str| {
        spans
            .iter()
            .filter(|e| e.span.name == name && descends_from(&spans, &e.span, &unknown))
            .map(|e| e.span.clone())
            .collect::<Vec<_>>()
    };
    assert!(
        under("cache links l1")
            .iter()
            .all(|s| flag(s, "cache.hit") == Some(false))
            && !under("cache links l1").is_empty(),
        "L1 misses: {:#?}",
        names(&spans)
    );
    let load = under("cache links load");
    assert_eq!(load.len(), 1, "one load: {:#?}", names(&spans));
    assert!(
        spans
            .iter()
            .any(|e| e.span.name.starts_with("db ") && descends_from(&spans, &e.span, &load[0])),
        "the load reads the database: {:#?}",
        names(&spans)
    );
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_traceparent_header_continues_the_callers_trace() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = traced_serve(&receiver, dir.path(), &[]).await;
    let client = client();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let answer = client
        .get(server.url("/continued"))
        .header("traceparent", format!("00-{trace_id}-{parent_id}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    let fresh = client.get(server.url("/fresh")).send().await.unwrap();
    assert_eq!(fresh.status(), 404);

    let continued = receiver
        .wait_for("span of the request with a traceparent", |s| {
            request_span(s, "GET", "/continued")
        })
        .await;
    assert_eq!(hex(&continued.trace_id), trace_id);
    assert_eq!(hex(&continued.parent_span_id), parent_id);
    let fresh = receiver
        .wait_for("span of the request without one", |s| {
            request_span(s, "GET", "/fresh")
        })
        .await;
    assert_ne!(hex(&fresh.trace_id), trace_id);
    assert!(fresh.parent_span_id.is_empty());
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_a_request_enqueues_runs_in_a_worker_process_within_the_requests_trace() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = traced_serve(&receiver, dir.path(), &["--workers", "off"]).await;
    let worker = Basis::listening(receiver.command(
        dir.path(),
        "basis-worker",
        &["worker", "--ops-listen", "127.0.0.1:0"],
    ))
    .await;
    let client = client();
    sign_up(&client, &server.url(""), "ann@example.com", PASSWORD, "Ann").await;
    let asked = client
        .post(server.url("/auth/password-reset"))
        .json(&json!({"email": "ann@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 202);

    // Without an SMTP server the mail job fails at once: its run is still a span.
    let job = receiver
        .wait_for("the worker's span of the mail job", |s| {
            s.iter()
                .find(|e| {
                    e.service == "basis-worker"
                        && e.span.kind == SpanKind::Consumer as i32
                        && text(&e.span, "job.kind").as_deref() == Some("mail.password_reset")
                })
                .map(|e| e.span.clone())
        })
        .await;
    assert_eq!(job.name, "mail.password_reset process");
    let request = receiver
        .wait_for("span of POST /auth/password-reset", |s| {
            request_span(s, "POST", "/auth/password-reset")
        })
        .await;
    assert_eq!(
        hex(&job.trace_id),
        hex(&request.trace_id),
        "one trace across server and worker"
    );
    let spans = receiver.spans.lock().unwrap().clone();
    let enqueue = spans
        .iter()
        .find(|e| e.span.span_id == job.parent_span_id)
        .unwrap_or_else(|| panic!("the job's parent span: {:#?}", names(&spans)));
    assert_eq!(enqueue.service, "basis", "enqueued by the server");
    assert_eq!(enqueue.span.kind, SpanKind::Producer as i32);
    assert_eq!(
        text(&enqueue.span, "messaging.destination.name").as_deref(),
        Some("mail")
    );
    assert!(
        descends_from(&spans, &enqueue.span, &request),
        "the enqueue happened within the request"
    );
    assert!(worker.terminate().await.success());
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_a_request_writes_to_the_outbox_is_consumed_within_the_requests_trace() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let server = traced_serve(&receiver, dir.path(), &["--webhooks-allow-private"]).await;
    let client = client();
    sign_up(&client, &server.url(""), "ann@example.com", PASSWORD, "Ann").await;
    let token = access_token(&client, &server.url(""), "ann@example.com", PASSWORD).await;
    // A subscriber for the event; the delivery itself may fail (nothing answers there),
    // the consumer's span is what this test reads.
    let hooked = call(
        &client,
        reqwest::Method::POST,
        server.url("/webhooks"),
        &token,
        None,
        json!({
            "url": format!("{}/hook", receiver.url),
            "events": ["link.created"],
            "secret": "a secret of the traced hook",
        }),
    )
    .await;
    assert_eq!(hooked.0, 201, "{}", hooked.1);
    let (status, _) = call(
        &client,
        reqwest::Method::POST,
        server.url("/shorten"),
        &token,
        None,
        json!({"longUrl": "https://example.com/traced"}),
    )
    .await;
    assert_eq!(status, 201);

    // The relay publishes the event in a pass of its own, long after the request ended; the
    // row carried the request's context, so the fan-out job joins the request's trace.
    let consumed = receiver
        .wait_for("the consumer span of the link.created event", |s| {
            s.iter()
                .find(|e| {
                    e.span.kind == SpanKind::Consumer as i32
                        && text(&e.span, "job.kind").as_deref() == Some("link.created")
                })
                .map(|e| e.span.clone())
        })
        .await;
    let request = receiver
        .wait_for("span of POST /shorten", |s| {
            request_span(s, "POST", "/shorten")
        })
        .await;
    assert_eq!(
        hex(&consumed.trace_id),
        hex(&request.trace_id),
        "the event's consumer is in the trace of the request that wrote it"
    );
    // The relay's span ends after the publish inside it: wait for it and the line above it.
    receiver
        .wait_for(
            "the relay's span under the request, above the consumer",
            |s| {
                s.iter()
                    .any(|e| {
                        e.span.name == "link.created relay"
                            && descends_from(s, &consumed, &e.span)
                            && descends_from(s, &e.span, &request)
                    })
                    .then_some(())
            },
        )
        .await;
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkout_sagas_steps_are_spans_in_the_trace_of_the_order_request() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    create_user(dir.path(), None, "admin@example.com", "admin", PASSWORD).await;
    // Workers in the server, and the payment provider's simulator it starts by itself.
    let server = traced_serve(&receiver, dir.path(), &[]).await;
    order_a_lamp(&server).await;

    let request = receiver
        .wait_for("span of POST /orders", |s| {
            request_span(s, "POST", "/orders")
        })
        .await;
    let steps = ["reserve", "authorize", "confirm", "capture"];
    // A job's span ends (and is exported) after the step inside it: wait for the whole line
    // of ancestors, not only for the steps.
    let spans = receiver
        .wait_for("every step's span under the order request", |s| {
            steps
                .iter()
                .all(|step| {
                    s.iter().any(|e| {
                        e.span.name == format!("saga {step} run")
                            && descends_from(s, &e.span, &request)
                    })
                })
                .then(|| s.to_vec())
        })
        .await;
    for step in steps {
        let span = spans
            .iter()
            .find(|e| {
                e.span.name == format!("saga {step} run") && e.span.trace_id == request.trace_id
            })
            .map(|e| e.span.clone())
            .unwrap();
        assert_eq!(
            text(&span, "saga.outcome").as_deref(),
            Some("done"),
            "{step}"
        );
        assert!(
            descends_from(&spans, &span, &request),
            "{step} runs in a job the order request enqueued: {:#?}",
            names(&spans)
        );
    }
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_the_collector_refuses_are_reported_in_the_log() {
    // A collector that answers every export with 503.
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let mut command = basis(dir.path(), None);
    command
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env_remove("RUST_LOG")
        .args(["--otlp-endpoint", &url])
        .args(["serve", "--listen", "127.0.0.1:0"]);
    let server = Basis::listening(command).await;
    let client = client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    loop {
        // Each request makes spans for the next batch, which the collector refuses again.
        let answer = client.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        let lines = server.log_lines();
        let reported = lines
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .any(|event| {
                event["level"] == "ERROR"
                    && event["target"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("opentelemetry"))
                    && event["name"]
                        .as_str()
                        .is_some_and(|name| name.contains("ExportError"))
            });
        if reported {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no export failure in the log: {lines:#?}"
        );
        ticks.tick().await;
    }
    assert!(server.terminate().await.success());
}

/// As the buyer of a lamp: the admin (made before the server started) stocks it, the buyer
/// signs up, opens an account, gets a deposit and orders it (202).
async fn order_a_lamp(server: &Basis) {
    use reqwest::Method;
    let client = client();
    let base = server.url("");
    let admin = access_token(&client, &base, "admin@example.com", PASSWORD).await;
    let product = json!({"name": "lamp", "price": 250, "currency": "USD", "stock": 3});
    let (status, product) = call(
        &client,
        Method::POST,
        server.url("/products"),
        &admin,
        None,
        product,
    )
    .await;
    assert_eq!(status, 201, "{product}");
    sign_up(
        &client,
        &server.url(""),
        "buyer@example.com",
        PASSWORD,
        "Buyer",
    )
    .await;
    let buyer = access_token(&client, &base, "buyer@example.com", PASSWORD).await;
    let (status, account) = call(
        &client,
        Method::POST,
        server.url("/accounts"),
        &buyer,
        None,
        json!({"currency": "USD"}),
    )
    .await;
    assert_eq!(status, 201, "{account}");
    let account = account["id"].as_i64().unwrap();
    let deposits = server.url(&format!("/accounts/{account}/deposits"));
    let (status, _) = call(
        &client,
        Method::POST,
        deposits,
        &admin,
        Some("d1"),
        json!({"amount": 1_000}),
    )
    .await;
    assert_eq!(status, 201);
    let order =
        json!({"items": [{"productId": product["id"], "quantity": 1}], "paymentAccount": account});
    let (status, order) = call(
        &client,
        Method::POST,
        server.url("/orders"),
        &buyer,
        Some("o1"),
        order,
    )
    .await;
    assert_eq!(status, 202, "{order}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_the_payment_provider_carries_the_orders_trace() {
    // The provider: remembers the traceparent of each authorization and answers 503 (the
    // saga then retries, which does not matter here).
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = seen.clone();
    let app = axum::Router::new().route(
        "/authorizations",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let kept = kept.clone();
            async move {
                if let Some(parent) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
                    kept.lock().unwrap().push(parent.to_owned());
                }
                axum::http::StatusCode::SERVICE_UNAVAILABLE
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let provider = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    create_user(dir.path(), None, "admin@example.com", "admin", PASSWORD).await;
    let server = traced_serve(&receiver, dir.path(), &["--payments-url", &provider]).await;
    order_a_lamp(&server).await;
    let request = receiver
        .wait_for("span of POST /orders", |s| {
            request_span(s, "POST", "/orders")
        })
        .await;
    let trace_id = hex(&request.trace_id);
    let parent = receiver
        .wait_for("the provider's first authorization", |_| {
            seen.lock().unwrap().first().cloned()
        })
        .await;
    let fields: Vec<&str> = parent.split('-').collect();
    assert_eq!(fields.len(), 4, "{parent}");
    assert_eq!(fields[1], trace_id, "the call continues the order's trace");
    // Its parent is the client span of the call, under the saga's authorize step. The job's
    // span around the step ends (and is exported) after the call: wait for the whole line of
    // ancestors, not only for the call.
    let spans = receiver
        .wait_for("the client span of the call under the order request", |s| {
            s.iter()
                .any(|e| hex(&e.span.span_id) == fields[2] && descends_from(s, &e.span, &request))
                .then(|| s.to_vec())
        })
        .await;
    let call = spans
        .iter()
        .find(|e| hex(&e.span.span_id) == fields[2])
        .map(|e| e.span.clone())
        .unwrap();
    assert_eq!(call.name, "POST /authorizations");
    assert_eq!(call.kind, SpanKind::Client as i32);
    assert!(
        descends_from(&spans, &call, &request),
        "{:#?}",
        names(&spans)
    );
    assert!(server.terminate().await.success());
}

/// A thousand links in one request as a new user of `server`: the insert takes well over a
/// millisecond, and so do the queue's statements on the thousand events it raises.
async fn create_a_thousand_links(server: &Basis) {
    let client = client();
    sign_up(
        &client,
        &server.url(""),
        "slow@example.com",
        PASSWORD,
        "Slow",
    )
    .await;
    let token = access_token(&client, &server.url(""), "slow@example.com", PASSWORD).await;
    let items: Vec<Value> = (0..1000)
        .map(|i| json!({"longUrl": format!("https://example.com/slow-value-{i}")}))
        .collect();
    let bulk = client
        .post(server.url("/links/bulk"))
        .bearer_auth(&token)
        .json(&items)
        .send()
        .await
        .unwrap();
    assert!(bulk.status().is_success(), "{}", bulk.status());
}

/// The first slow-statement event in `server`'s log whose SQL contains `sql`, waiting up to
/// 30 s for it; no line of the log may hold a bound value of the links made above.
async fn slow_statement_logged(server: &Basis, sql: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let lines = server.log_lines();
        let found = lines
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|event| {
                event["target"] == "sqlx::query"
                    && event["level"] == "WARN"
                    && event["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("slow statement"))
                    && event["db.statement"]
                        .as_str()
                        .is_some_and(|statement| statement.contains(sql))
            });
        if let Some(found) = found {
            assert!(
                !lines.iter().any(|line| line.contains("slow-value-")),
                "bound values never reach the log"
            );
            assert!(
                found["elapsed_secs"].as_f64().is_some_and(|s| s >= 0.001),
                "{found}"
            );
            assert!(found["elapsed"].is_string(), "{found}");
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slow statement on {sql} logged: {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_statement_over_the_threshold_is_logged_with_its_sql_and_duration_but_no_values(
    database_url: Option<String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let server = Basis::serve(
        dir.path(),
        database_url.as_deref(),
        &["--slow-query-ms", "1"],
    )
    .await;
    create_a_thousand_links(&server).await;
    slow_statement_logged(&server, "INSERT INTO links").await;
    assert!(server.terminate().await.success());
}

/// The queue on a database of its own opens its own pools; they log slow statements too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_statement_of_the_queue_on_its_own_database_is_logged() {
    let Some(admin) = postgres_admin_url() else {
        return;
    };
    let store = fresh_postgres_database(&admin).await;
    let queue = fresh_postgres_database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let args = ["--slow-query-ms", "1", "--queue-url", &queue];
    let server = Basis::serve(dir.path(), Some(&store), &args).await;
    create_a_thousand_links(&server).await;
    slow_statement_logged(&server, "queue_jobs").await;
    assert!(server.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_statement_is_logged_with_its_sql_and_duration_on_sqlite() {
    a_statement_over_the_threshold_is_logged_with_its_sql_and_duration_but_no_values(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_statement_is_logged_with_its_sql_and_duration_on_postgres() {
    if let Some(admin) = postgres_admin_url() {
        let url = fresh_postgres_database(&admin).await;
        a_statement_over_the_threshold_is_logged_with_its_sql_and_duration_but_no_values(Some(url))
            .await;
    }
}
