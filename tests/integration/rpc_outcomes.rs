//! Call outcomes (`CallError::outcome`): each case produced against a real server process and
//! reported as what it is — never sent, sent with an unknown outcome (connection dropped by a
//! SIGKILL in the middle of a call, deadline passed), refused before the handler ran (an
//! admission check), and the handler's own failure — with which are safe to retry.

use std::time::Duration;

use cell_sdk::{CallError, CallOutcome, Metadata, SynapseConfig, testkit::temp_socket_dir};

use super::rpc::Server;
use super::rpc::probe::{ProbeClient, ProbeError};

#[tokio::test(flavor = "current_thread")]
async fn a_server_killed_in_the_middle_of_a_call_leaves_its_outcome_unknown() {
    let dir = temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let probe = ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap();
    let watcher = ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap();
    let call = tokio::spawn({
        let probe = probe.clone();
        async move { probe.sleep(30_000).await }
    });
    // The handler is running on the server...
    let mut running = false;
    for _ in 0..200 {
        if watcher.sleeping().await.unwrap() == 1 {
            running = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(running, "the call never started");
    // ...when the server dies.
    server.signal(libc::SIGKILL);
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, CallError::Disconnected(_)), "{err:?}");
    assert_eq!(err.outcome(), CallOutcome::Unknown);
    assert!(!err.is_safe_to_retry());

    // The next call cannot reconnect: it never left this process.
    let err = probe.add(1, 2).await.unwrap_err();
    assert!(matches!(err, CallError::Connect(_)), "{err:?}");
    assert_eq!(err.outcome(), CallOutcome::NotSent);
    assert!(err.is_safe_to_retry());
}

#[tokio::test(flavor = "current_thread")]
async fn deadlines_before_and_after_sending_are_told_apart() {
    let dir = temp_socket_dir().unwrap();
    let server = Server::unix(&dir);
    let config = SynapseConfig {
        max_in_flight: 1,
        ..SynapseConfig::default()
    };
    let probe = ProbeClient::connect_with(server.endpoint.clone(), config)
        .await
        .unwrap();
    let hurried = probe.with_timeout(Duration::from_millis(300));
    // Sent, never answered: the server may have started it.
    let err = hurried.hold().await.unwrap_err();
    assert!(matches!(err, CallError::Timeout), "{err:?}");
    assert_eq!(err.outcome(), CallOutcome::Unknown);
    // The one slot is taken by a call in flight: the next call's deadline passes before it
    // is sent.
    let holding = tokio::spawn({
        let probe = probe.clone();
        async move { probe.hold().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = hurried.add(1, 1).await.unwrap_err();
    assert!(matches!(err, CallError::NotSent(_)), "{err:?}");
    assert_eq!(err.outcome(), CallOutcome::NotSent);
    assert!(err.is_safe_to_retry());
    holding.abort();
}

#[tokio::test(flavor = "current_thread")]
async fn a_refusal_before_the_handler_ran_and_application_errors_are_their_own_cases() {
    let dir = temp_socket_dir().unwrap();
    let socket = dir.path().join("probe.sock");
    let server = Server::start(
        &["--socket", socket.to_str().unwrap(), "--require", "token"],
        &[],
    );
    let anonymous = ProbeClient::connect_to(server.endpoint.clone())
        .await
        .unwrap();
    let mut md = Metadata::new();
    md.insert("token", b"t").unwrap();
    let admitted = anonymous.with_metadata(md);

    // Refused: the handler never ran (`hold` would count itself in `holding`).
    let hurried = anonymous.with_timeout(Duration::from_secs(10));
    let err = hurried.hold().await.unwrap_err();
    match &err {
        CallError::Refused(reason) => assert!(reason.contains("token"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(err.outcome(), CallOutcome::Refused);
    assert!(err.is_safe_to_retry());
    assert_eq!(anonymous.holding().await.unwrap(), 0);

    // Admitted: the application's error and a panic are the handler's own failures.
    assert_eq!(admitted.add(2, 3).await.unwrap(), 5);
    let err = admitted.check(-1).await.unwrap_err();
    assert!(
        matches!(err, CallError::App(ProbeError::Negative(-1))),
        "{err:?}"
    );
    assert_eq!(err.outcome(), CallOutcome::Failed);
    assert!(!err.is_safe_to_retry());
    let err = admitted.panic("boom".into()).await.unwrap_err();
    assert_eq!(err.outcome(), CallOutcome::Failed);
}
