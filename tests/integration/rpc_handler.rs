//! The one-crate form of a service: `#[service] pub struct Users;` with its handlers in a
//! `#[handler] impl`, served in-process by the test kit and called through the typed client.

use std::sync::Mutex;

use cell_sdk::{Archived, CallError, handler, protein, service, testkit};

#[protein]
pub struct User {
    pub name: String,
    pub email: String,
}

#[protein]
pub enum UserError {
    Duplicate(String),
    Invalid { field: String },
}

#[service]
pub(crate) struct Users {
    names: Mutex<Vec<String>>,
}

#[handler]
impl Users {
    async fn create(&self, u: User) -> Result<u64, UserError> {
        if !u.email.contains('@') {
            return Err(UserError::Invalid {
                field: "email".into(),
            });
        }
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if names.contains(&u.name) {
            return Err(UserError::Duplicate(u.name));
        }
        names.push(u.name);
        Ok(names.len() as u64)
    }

    async fn ping(&self) -> u64 {
        7
    }

    async fn rename(&self, from: String, to: String, limit: u32) -> Option<String> {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let slot = names.iter_mut().find(|n| **n == from)?;
        *slot = to.chars().take(limit as usize).collect();
        Some(slot.clone())
    }

    async fn nothing(&self) {}

    /// Zero-copy: reads the validated archive in place, never deserializes a `User`.
    async fn domain_len(&self, u: &Archived<User>) -> u64 {
        let email: &str = u.email.as_str();
        email.split('@').nth(1).map_or(0, |d| d.len() as u64)
    }

    /// Zero-copy for any argument: borrows the second of three.
    async fn tagged(&self, tag: String, u: &Archived<User>, times: u32) -> String {
        format!("{tag}:{}x{times}", u.name.as_str())
    }
}

fn user(name: &str, email: &str) -> User {
    User {
        name: name.into(),
        email: email.into(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn struct_services_serve_typed_calls_and_application_errors() {
    let service = Users {
        names: Mutex::new(Vec::new()),
    };
    let (cell, users) = testkit::start(service).await.unwrap();
    assert_eq!(users.ping().await.unwrap(), 7);
    assert_eq!(users.create(user("ann", "ann@x")).await.unwrap(), 1);
    assert_eq!(users.create(user("bob", "bob@x")).await.unwrap(), 2);
    match users.create(user("ann", "ann@y")).await {
        Err(CallError::App(UserError::Duplicate(name))) => assert_eq!(name, "ann"),
        other => panic!("expected Duplicate, got {other:?}"),
    }
    match users.create(user("cy", "nope")).await {
        Err(CallError::App(UserError::Invalid { field })) => assert_eq!(field, "email"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(
        users
            .rename("bob".into(), "robert".into(), 3)
            .await
            .unwrap(),
        Some("rob".to_string())
    );
    assert_eq!(
        users.rename("zed".into(), "z".into(), 1).await.unwrap(),
        None
    );
    users.nothing().await.unwrap();
    assert_eq!(
        users
            .domain_len(user("dee", "dee@example.org"))
            .await
            .unwrap(),
        11
    );
    assert_eq!(
        users
            .tagged("t".into(), user("eve", "eve@x"), 3)
            .await
            .unwrap(),
        "t:evex3"
    );
    // The same call shape through a test double.
    let double: UsersClient = testkit::double(Users {
        names: Mutex::new(Vec::new()),
    });
    assert_eq!(
        double
            .tagged("d".into(), user("fay", "fay@x"), 1)
            .await
            .unwrap(),
        "d:fayx1"
    );
    cell.stop().await.unwrap();
}

#[test]
fn service_names_default_to_kebab_case() {
    assert_eq!(<UsersClient as cell_sdk::Protocol>::NAME, "users");
    assert_eq!(
        <UsersClient as cell_sdk::Protocol>::METHODS,
        [
            "create",
            "ping",
            "rename",
            "nothing",
            "domain_len",
            "tagged"
        ]
    );
}

/// The same methods twice: strict (`#[service(strict)]`) and lenient (the default).
#[service(strict)]
pub(crate) struct Exact;

#[handler]
impl Exact {
    async fn double(&self, n: u64) -> u64 {
        n * 2
    }
    async fn one(&self) -> u64 {
        1
    }
}

#[service]
pub(crate) struct Lenient;

#[handler]
impl Lenient {
    async fn double(&self, n: u64) -> u64 {
        n * 2
    }
    async fn one(&self) -> u64 {
        1
    }
}

/// Sends `payload` as a request for `method` on a raw connection to `endpoint` (service
/// `name`, `fingerprint`) and returns the answer's payload, or `None` if the server closed the
/// connection instead.
fn raw_call(
    endpoint: &cell_sdk::Endpoint,
    name: &str,
    fingerprint: u64,
    method: u16,
    payload: &[u8],
) -> Option<Vec<u8>> {
    use cell_runtime::frame::{Header, Kind, encode_frame};
    use cell_runtime::handshake::{Hello, PROTOCOL_VERSION};
    use std::io::Write;
    let cell_sdk::Endpoint::Unix(path) = endpoint else {
        panic!("unix only")
    };
    let mut stream = std::os::unix::net::UnixStream::connect(path).expect("connect");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("a read timeout");
    let hello = Hello {
        version: PROTOCOL_VERSION,
        service: name.into(),
        fingerprint,
        nonce: Vec::new(),
        max_frame_len: 1 << 20,
    };
    stream.write_all(&hello.to_frame()).expect("hello sent");
    let (welcome, _) = super::rpc::read_frame(&mut stream).expect("a welcome");
    assert_eq!(welcome.kind, Kind::Welcome);
    let mut wire = Vec::new();
    let mut header = Header::new(Kind::Request);
    header.method = method;
    header.id = 1;
    encode_frame(&mut wire, header, payload);
    stream.write_all(&wire).expect("request sent");
    let (reply, payload) = super::rpc::read_frame(&mut stream)?;
    assert_eq!(reply.kind, Kind::Response);
    Some(payload)
}

#[test]
fn a_strict_service_refuses_payloads_that_are_not_exactly_the_arguments() {
    use cell_sdk::{Protocol, codec};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let exact = runtime
        .block_on(async { testkit::TestCell::start(Exact) })
        .unwrap();
    let lenient = runtime
        .block_on(async { testkit::TestCell::start(Lenient) })
        .unwrap();
    let archive = codec::to_bytes(&21u64).unwrap();
    // Valid but not exact: 16 bytes before the root (rkyv's validation accepts them).
    let mut prefixed = vec![0xa5u8; 16];
    prefixed.extend_from_slice(&archive);
    let cases = [
        (exact.endpoint(), "exact", ExactClient::FINGERPRINT, true),
        (
            lenient.endpoint(),
            "lenient",
            LenientClient::FINGERPRINT,
            false,
        ),
    ];
    for (endpoint, name, fingerprint, strict) in cases {
        // The exact archive is served by both.
        let answer = raw_call(endpoint, name, fingerprint, 0, &archive).expect("served");
        assert_eq!(codec::from_bytes::<u64>(&answer).unwrap(), 42);
        // A prefixed one only by the lenient service; the strict one closes the connection.
        let answer = raw_call(endpoint, name, fingerprint, 0, &prefixed);
        assert_eq!(answer.is_none(), strict, "{name}: {answer:?}");
        // Bytes for a method without arguments: the same.
        let answer = raw_call(endpoint, name, fingerprint, 1, &archive);
        assert_eq!(answer.is_none(), strict, "{name}: {answer:?}");
    }
    // Typed clients (which send exact archives) are served by the strict service as ever.
    let answer = runtime.block_on(async {
        let client = ExactClient::connect_to(exact.endpoint().clone())
            .await
            .unwrap();
        (client.double(5).await.unwrap(), client.one().await.unwrap())
    });
    assert_eq!(answer, (10, 1));
}
