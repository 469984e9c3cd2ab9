//! Handler layers (`cell_runtime::layer`): a one-crate service wrapped in tower layer stacks,
//! served on a real socket by the test kit and called through its typed client. Layers run in
//! tower's documented order, tower's own middleware (timeout, concurrency limit) works as it
//! is, a layer can answer instead of the handler (a refusal), and one method can be wrapped
//! alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cell_runtime::layer::{BoxError, CallRequest, Layered, Refusal, for_method};
use cell_sdk::{CallContext, CallError, CallOutcome, Service, handler, service, testkit};
use tower::ServiceExt;

type Log = Arc<Mutex<Vec<String>>>;

fn push(log: &Log, line: impl Into<String>) {
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(line.into());
}

#[service]
pub(crate) struct Layers {
    log: Log,
    running: AtomicU64,
    most: AtomicU64,
}

#[handler]
impl Layers {
    async fn slow(&self, ms: u64) -> u64 {
        /// Counts the call out however it ends (a timeout drops it).
        struct Running<'a>(&'a AtomicU64);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        let _running = Running(&self.running);
        self.most.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    async fn fast(&self) -> u64 {
        let method = CallContext::current().map(|c| c.method());
        push(&self.log, format!("handler {method:?}"));
        1
    }

    async fn most_at_once(&self) -> u64 {
        self.most.load(Ordering::SeqCst)
    }
}

fn layers(log: &Log) -> Layers {
    Layers {
        log: log.clone(),
        running: AtomicU64::new(0),
        most: AtomicU64::new(0),
    }
}

type Call = <Layers as Service>::Call;

/// A layer that logs `name before <method>` / `name after` around its inner service: the shape
/// of a provider's layer (a metrics or audit layer looks the same).
#[derive(Clone)]
struct Logging {
    name: &'static str,
    log: Log,
}

impl<S> tower::Layer<S> for Logging {
    type Service = LoggingService<S>;
    fn layer(&self, inner: S) -> LoggingService<S> {
        LoggingService {
            layer: self.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
struct LoggingService<S> {
    layer: Logging,
    inner: S,
}

impl<C, S> tower::Service<CallRequest<C>> for LoggingService<S>
where
    C: Send + 'static,
    S: tower::Service<CallRequest<C>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    S::Response: Send,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: CallRequest<C>) -> Self::Future {
        let Logging { name, log } = self.layer.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            push(&log, format!("{name} before {}", request.context.method()));
            let reply = inner.oneshot(request).await.map_err(Into::into);
            push(&log, format!("{name} after"));
            reply
        })
    }
}

#[tokio::test(flavor = "current_thread")]
async fn layers_run_in_the_documented_order_around_the_handler() {
    let log = Log::default();
    let stack = tower::ServiceBuilder::new()
        .layer(Logging {
            name: "outer",
            log: log.clone(),
        })
        .layer(Logging {
            name: "inner",
            log: log.clone(),
        });
    let (cell, client) = testkit::start(Layered::new(layers(&log), stack))
        .await
        .unwrap();
    assert_eq!(client.fast().await.unwrap(), 1);
    assert_eq!(
        *log.lock().unwrap(),
        [
            "outer before fast",
            "inner before fast",
            "handler Some(\"fast\")",
            "inner after",
            "outer after"
        ]
    );
    cell.stop().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn tower_timeout_and_concurrency_limit_work_as_they_are() {
    let log = Log::default();
    let stack = tower::ServiceBuilder::new()
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(
            300,
        )));
    let (cell, client) = testkit::start(Layered::new(layers(&log), stack))
        .await
        .unwrap();
    // The timeout stops a slow handler; the caller sees a timeout with an unknown outcome.
    let err = client.slow(5_000).await.unwrap_err();
    assert!(matches!(err, CallError::Timeout), "{err:?}");
    assert_eq!(err.outcome(), CallOutcome::Unknown);
    // The concurrency limit runs four concurrent calls one at a time.
    let calls = futures::future::join_all((0..4).map(|_| client.slow(20))).await;
    assert!(calls.iter().all(|r| matches!(r, Ok(20))), "{calls:?}");
    assert_eq!(client.most_at_once().await.unwrap(), 1);
    cell.stop().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_layer_answers_instead_and_one_method_can_be_wrapped_alone() {
    let log = Log::default();
    // Refuses `fast` (an auth layer would look at `request.context.metadata()`).
    let refuse_fast = tower::layer::layer_fn(|inner: cell_runtime::layer::Handler<Layers>| {
        tower::service_fn(move |request: CallRequest<Call>| {
            let inner = inner.clone();
            async move {
                if request.context.method() == "fast" {
                    return Err::<_, BoxError>(Box::new(Refusal("not you".into())));
                }
                inner.oneshot(request).await
            }
        })
    });
    let stack = tower::ServiceBuilder::new()
        .layer(for_method(
            "slow",
            tower::timeout::TimeoutLayer::new(Duration::from_millis(200)),
        ))
        .layer(refuse_fast);
    let (cell, client) = testkit::start(Layered::new(layers(&log), stack))
        .await
        .unwrap();
    let err = client.fast().await.unwrap_err();
    match &err {
        CallError::Refused(reason) => assert_eq!(reason, "not you"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(err.is_safe_to_retry());
    assert!(log.lock().unwrap().is_empty(), "the handler never ran");
    // The timeout wraps `slow` only: `most_at_once` is not cut short, `slow` is.
    assert!(matches!(client.slow(2_000).await, Err(CallError::Timeout)));
    assert_eq!(client.slow(10).await.unwrap(), 10);
    assert_eq!(client.most_at_once().await.unwrap(), 1);
    cell.stop().await.unwrap();
}
