//! Test doubles: a typed client over an in-process implementation of the service
//! (`testkit::double`), with no socket, in the same call shape as a client of a real server
//! process — one function below drives both.

use std::time::Duration;

use cell_sdk::{CallContext, CallError, CallOutcome, Metadata, Peer, testkit};

use super::rpc::Server;
use super::rpc::probe::{Probe, ProbeClient, ProbeError, ProbeServer, Relayed, SeenContext};

/// A fake of the probe service: answers arithmetic and errors like the real one, reports its
/// context, and never sleeps for real.
struct FakeProbe;

impl Probe for FakeProbe {
    async fn echo(&self, text: String) -> String {
        format!("fake {text}")
    }
    async fn add(&self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }
    async fn sleep(&self, ms: u64) -> u64 {
        ms
    }
    async fn panic(&self, message: String) -> u64 {
        panic!("{message}")
    }
    async fn check(&self, n: i64) -> Result<u64, ProbeError> {
        u64::try_from(n).map_err(|_| ProbeError::Negative(n))
    }
    async fn pid(&self) -> u32 {
        0
    }
    async fn hold(&self) -> u64 {
        std::future::pending::<()>().await;
        0
    }
    async fn holding(&self) -> u64 {
        0
    }
    async fn sleeping(&self) -> u64 {
        0
    }
    async fn context(&self) -> SeenContext {
        let ctx = CallContext::current().expect("a double sets the call context");
        let transport = match ctx.connection().peer() {
            Peer::InProcess { .. } => "in-process".to_string(),
            other => other.to_string(),
        };
        SeenContext {
            connection: ctx.connection().id().get(),
            transport,
            uid: None,
            pid: None,
            addr: None,
            authenticated: false,
            request_id: ctx.request_id(),
            method: ctx.method().to_string(),
            deadline_left_ms: None,
            metadata: ctx
                .metadata()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
            traceparent: None,
            span_id: None,
        }
    }
    async fn closed(&self) -> Vec<u64> {
        Vec::new()
    }
    async fn relay(&self, _socket: String) -> Result<Relayed, ProbeError> {
        Err(ProbeError::Failed("no relaying in a fake".into()))
    }
}

/// Code under test: takes a client, whatever is behind it.
async fn sum_checked(probe: &ProbeClient, n: i64) -> Result<u64, CallError<ProbeError>> {
    let checked = probe.check(n).await?;
    probe.add(checked, 1).await.map_err(CallError::widen)
}

#[tokio::test(flavor = "current_thread")]
async fn a_double_answers_the_typed_client_in_the_same_call_shape() {
    let fake: ProbeClient = testkit::double(ProbeServer(FakeProbe));
    let dir = testkit::temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let real = ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap();
    for probe in [&fake, &real] {
        assert_eq!(sum_checked(probe, 41).await.unwrap(), 42);
        assert!(matches!(
            sum_checked(probe, -1).await,
            Err(CallError::App(ProbeError::Negative(-1)))
        ));
    }
    // It is the fake that answered.
    assert_eq!(fake.echo("hi".into()).await.unwrap(), "fake hi");
    assert_eq!(real.echo("hi".into()).await.unwrap(), "hi");
}

#[tokio::test(flavor = "current_thread")]
async fn a_double_gives_handlers_their_context_and_reports_failures_as_a_server_would() {
    let fake: ProbeClient = testkit::double(ProbeServer(FakeProbe));
    let mut md = Metadata::new();
    md.insert("who", b"test").unwrap();
    let seen = fake.with_metadata(md).context().await.unwrap();
    assert_eq!(seen.transport, "in-process");
    assert_eq!(seen.method, "context");
    assert_eq!(seen.metadata, vec![("who".to_string(), b"test".to_vec())]);
    // A panic is caught; a deadline stops the handler.
    let err = fake.panic("boom".into()).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Panicked(m) if m == "boom"),
        "{err:?}"
    );
    let err = fake
        .with_timeout(Duration::from_millis(50))
        .hold()
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Timeout), "{err:?}");
    assert_eq!(err.outcome(), CallOutcome::Unknown);
}
