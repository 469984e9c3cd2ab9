//! `#[protein]`: behaviour of the generated code and the compile errors users see.

use cell_sdk::{Fingerprint, codec, protein};

#[protein]
pub struct Address {
    pub city: String,
    pub zip: u32,
}

#[protein]
struct User {
    id: u64,
    email: String,
    address: Address,
    tags: Vec<String>,
}

mod changed {
    use super::*;

    /// Same fields as `super::Address` but `zip` widened: nested change.
    #[protein]
    pub struct Address {
        pub city: String,
        pub zip: u64,
    }

    #[protein]
    pub struct User {
        pub id: u64,
        pub email: String,
        pub address: Address,
        pub tags: Vec<String>,
    }

    /// Same as `super::User` with the type renamed: the fingerprint is structural.
    #[protein]
    pub struct Member {
        pub id: u64,
        pub email: String,
        pub address: super::Address,
        pub tags: Vec<String>,
    }
}

#[protein]
#[derive(Debug)]
enum Event<T> {
    Created { id: u64, payload: T },
    Deleted(u64),
    Reset,
}

#[test]
fn struct_round_trips_through_validated_bytes() {
    let user = User {
        id: 7,
        email: "ada@example.com".into(),
        address: Address {
            city: "London".into(),
            zip: 1815,
        },
        tags: vec!["admin".into()],
    };
    let bytes = codec::to_bytes(&user).unwrap();
    let archived = codec::access::<User>(&bytes).unwrap();
    assert_eq!(archived.email.as_str(), "ada@example.com");
    assert_eq!(codec::from_bytes::<User>(&bytes).unwrap(), user);
}

#[test]
fn generic_enum_round_trips() {
    let event = Event::Created {
        id: 1,
        payload: "x".to_string(),
    };
    let bytes = codec::to_bytes(&event).unwrap();
    assert_eq!(codec::from_bytes::<Event<String>>(&bytes).unwrap(), event);
    assert_eq!(<Event<String>>::type_name(), "Event<String>");
    assert_ne!(<Event<String>>::FINGERPRINT, <Event<u64>>::FINGERPRINT);
}

#[test]
fn nested_type_change_changes_the_fingerprint() {
    assert_ne!(User::FINGERPRINT, changed::User::FINGERPRINT);
    // The description names the same fields; only the nested fingerprint tells them apart.
    assert_eq!(User::describe(), changed::User::describe());
}

#[test]
fn renaming_the_type_keeps_the_fingerprint() {
    assert_eq!(User::FINGERPRINT, changed::Member::FINGERPRINT);
}

#[test]
fn describe_lists_fields_and_types() {
    assert_eq!(
        User::describe(),
        "struct { id: u64, email: String, address: Address, tags: Vec<String> }"
    );
}

#[test]
fn bytes_of_another_type_are_rejected() {
    let bytes = codec::to_bytes(&Event::<u64>::Deleted(3)).unwrap();
    assert!(codec::from_bytes::<User>(&bytes).is_err());
}

#[test]
fn compile_errors_point_at_the_users_tokens() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/protein/*.rs");
}
