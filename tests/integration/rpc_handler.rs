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
    cell.stop().await.unwrap();
}

#[test]
fn service_names_default_to_kebab_case() {
    assert_eq!(<UsersClient as cell_sdk::Protocol>::NAME, "users");
    assert_eq!(
        <UsersClient as cell_sdk::Protocol>::METHODS,
        ["create", "ping", "rename", "nothing", "domain_len"]
    );
}
