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

/// A user's own `String`, `Vec` and `format!` in scope: the expansion names everything by
/// absolute path, so none of them is picked up. (Not `#![no_implicit_prelude]`: rkyv's derives,
/// which `#[protein]` uses, need the prelude.)
mod shadowed_prelude {
    #![allow(
        dead_code,
        unused_macros,
        unreachable_pub,
        reason = "the items only have to compile next to the shadowing names"
    )]

    use cell_sdk::protein;

    pub struct String;
    pub struct Vec;
    macro_rules! format {
        ($($t:tt)*) => {
            ::core::compile_error!("the user's format! was used")
        };
    }

    #[protein]
    pub struct Item<T> {
        pub id: u64,
        pub name: ::std::string::String,
        pub payload: T,
    }

    #[protein]
    pub enum Kind {
        Plain,
        Tagged(u64),
    }

    #[protein]
    pub struct Marker;
}

#[test]
fn expansions_ignore_user_items_named_like_prelude_items() {
    use shadowed_prelude::{Item, Kind, Marker};
    assert_eq!(<Item<u64> as Fingerprint>::type_name(), "Item<u64>");
    assert!(Kind::describe().starts_with("enum"), "{}", Kind::describe());
    assert_eq!(Marker::describe(), "struct");
    let item = Item {
        id: 1,
        name: "a".into(),
        payload: 2u64,
    };
    assert_eq!(item.clone(), item);
}
