//! Test doubles: a typed client over an in-process implementation of the service
//! (`testkit::double`), with no socket, in the same call shape as a client of a real server
//! process — one function below drives both.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cell_sdk::{CallContext, CallError, CallOutcome, Metadata, Peer, Streaming, testkit};
use futures::StreamExt;

use super::rpc::Server;
use super::rpc::probe::{Probe, ProbeClient, ProbeError, ProbeServer, Relayed, SeenContext};

/// A fake of the probe service: answers arithmetic and errors like the real one, reports its
/// context, and never sleeps for real.
#[derive(Default)]
struct FakeProbe {
    /// `produce` producers running.
    producing: Arc<AtomicU64>,
}

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
    async fn count(&self, n: u64) -> Streaming<u64> {
        Streaming::iter(0..n)
    }
    async fn count_then_fail(&self, fail_at: u64) -> Streaming<u64, ProbeError> {
        let items = (0..fail_at)
            .map(Ok)
            .chain(std::iter::once(Err(ProbeError::Negative(fail_at as i64))));
        Streaming::new(futures::stream::iter(items))
    }
    async fn produce(&self, size: u32) -> Streaming<Vec<u8>> {
        let (sender, stream) = Streaming::channel(1);
        let live = self.producing.clone();
        live.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            while sender.send(vec![7; size as usize]).await.is_ok() {}
            live.fetch_sub(1, Ordering::SeqCst);
        });
        stream
    }
    async fn produced(&self) -> u64 {
        0
    }
    async fn producers(&self) -> u64 {
        self.producing.load(Ordering::SeqCst)
    }
    async fn stamp(&self, text: String) -> String {
        if !text.is_empty() {
            let mut md = cell_sdk::Metadata::new();
            md.insert("x-stamp", text.as_bytes())
                .expect("a short stamp");
            CallContext::current()
                .expect("inside a call")
                .set_reply_metadata(md);
        }
        text
    }
}

/// Code under test: takes a client, whatever is behind it.
async fn sum_checked(probe: &ProbeClient, n: i64) -> Result<u64, CallError<ProbeError>> {
    let checked = probe.check(n).await?;
    probe.add(checked, 1).await.map_err(CallError::widen)
}

#[tokio::test(flavor = "current_thread")]
async fn a_double_answers_the_typed_client_in_the_same_call_shape() {
    let fake: ProbeClient = testkit::double(ProbeServer(FakeProbe::default()));
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
    let fake: ProbeClient = testkit::double(ProbeServer(FakeProbe::default()));
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

/// Code under test for streams: the items of `count_then_fail` and how the stream ended.
async fn drain(probe: &ProbeClient, fail_at: u64) -> (Vec<u64>, Option<CallError<ProbeError>>) {
    let mut stream = probe
        .count_then_fail(fail_at)
        .await
        .expect("the stream call is sent");
    let mut items = Vec::new();
    let mut failure = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(n) => items.push(n),
            Err(e) => failure = Some(e),
        }
    }
    (items, failure)
}

#[tokio::test(flavor = "current_thread")]
async fn a_double_streams_to_the_typed_client_as_a_server_does() {
    let fake_cell = FakeProbe::default();
    let producing = fake_cell.producing.clone();
    let fake: ProbeClient = testkit::double(ProbeServer(fake_cell));
    let dir = testkit::temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let real = ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap();
    for probe in [&fake, &real] {
        let (items, failure) = drain(probe, 3).await;
        assert_eq!(items, [0, 1, 2]);
        assert!(
            matches!(failure, Some(CallError::App(ProbeError::Negative(3)))),
            "{failure:?}"
        );
        let all: Vec<_> = probe.count(5).await.unwrap().collect().await;
        let all: Vec<u64> = all.into_iter().map(Result::unwrap).collect();
        assert_eq!(all, [0, 1, 2, 3, 4]);
    }
    // Dropping the double's stream drops the handler's stream: its producer stops.
    let mut stream = fake.produce(8).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap(), vec![7; 8]);
    assert_eq!(producing.load(Ordering::SeqCst), 1);
    drop(stream);
    for _ in 0..1000 {
        if producing.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        producing.load(Ordering::SeqCst),
        0,
        "the producer kept running"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn reply_metadata_reaches_the_caller_from_a_double_and_from_a_server() {
    use cell_sdk::metadata::capture_reply;
    let fake: ProbeClient = testkit::double(ProbeServer(FakeProbe::default()));
    let dir = testkit::temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let real = ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap();
    for probe in [&fake, &real] {
        let (reply, md) = capture_reply(probe.stamp("s1".into())).await;
        assert_eq!(reply.unwrap(), "s1");
        let md = md.expect("the handler set reply metadata");
        assert_eq!(md.get("x-stamp"), Some(&b"s1"[..]));
        // A reply without metadata captures none; concurrent calls keep theirs apart.
        let (_, md) = capture_reply(probe.stamp(String::new())).await;
        assert!(md.is_none());
        let (a, b) = futures::join!(
            capture_reply(probe.stamp("a".into())),
            capture_reply(probe.stamp("b".into())),
        );
        assert_eq!(a.1.unwrap().get("x-stamp"), Some(&b"a"[..]));
        assert_eq!(b.1.unwrap().get("x-stamp"), Some(&b"b"[..]));
        // Outside `capture_reply` the call works as ever.
        assert_eq!(probe.stamp("c".into()).await.unwrap(), "c");
    }
}
