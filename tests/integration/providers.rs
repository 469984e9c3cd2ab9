//! The `validate` provider (a provider that is not a database) used the way a consumer uses it:
//! through `cell_remote!` and `#[Val::schema]`. Its compile errors are UI tests in
//! `tests/ui/remote/validate_*.rs`.

use cell_sdk::{cell_remote, protein};

cell_remote!(Val = "validate");

#[Val::schema]
struct Account {
    #[Val::email]
    email: String,
    #[Val::length(min = 3, max = 8)]
    handle: String,
    #[Val::range(18..)]
    age: u32,
    #[Val::non_empty]
    roles: Vec<String>,
    /// Checked only when present.
    #[Val::email]
    backup_email: Option<String>,
    #[Val::custom(even)]
    lucky: i64,
    /// No rule: never reported.
    #[expect(dead_code, reason = "a field without rules, only there to be skipped")]
    note: String,
}

fn even(n: &i64) -> Result<(), String> {
    if n % 2 == 0 {
        Ok(())
    } else {
        Err(format!("must be even (got {n})"))
    }
}

fn valid() -> Account {
    Account {
        email: "ada@example.com".into(),
        handle: "ada".into(),
        age: 36,
        roles: vec!["admin".into()],
        backup_email: None,
        lucky: 2,
        note: String::new(),
    }
}

#[test]
fn a_valid_value_passes() {
    assert_eq!(valid().validate(), Ok(()));
    let with_backup = Account {
        backup_email: Some("b@example.org".into()),
        ..valid()
    };
    assert_eq!(with_backup.validate(), Ok(()));
}

#[test]
fn every_failed_rule_is_reported_in_field_order() {
    let bad = Account {
        email: "ada".into(),
        handle: "a-very-long-handle".into(),
        age: 17,
        roles: vec![],
        backup_email: Some("nope".into()),
        lucky: 3,
        note: "anything".into(),
    };
    let errors = bad.validate().unwrap_err();
    let summary: Vec<(&str, &str)> = errors.iter().map(|e| (e.field, e.rule)).collect();
    assert_eq!(
        summary,
        [
            ("email", "email"),
            ("handle", "length"),
            ("age", "range"),
            ("roles", "non_empty"),
            ("backup_email", "email"),
            ("lucky", "custom"),
        ]
    );
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(messages[1], "handle: length must be 3..=8 (got 18)");
    assert_eq!(messages[2], "age: must be in 18.. (got 17)");
    assert_eq!(messages[5], "lucky: must be even (got 3)");
}

#[test]
fn the_trait_is_implemented_too() {
    fn check<T: Val::Validate>(value: &T) -> usize {
        value.validate().err().map_or(0, |e| e.len())
    }
    assert_eq!(check(&valid()), 0);
    assert_eq!(check(&Account { age: 1, ..valid() }), 1);
}

/// Tuple structs name fields by index; generics pass through.
#[Val::schema]
struct Pair<T: PartialOrd + std::fmt::Debug>(#[Val::range(0..10)] u8, #[Val::non_empty] Vec<T>);

#[test]
fn tuple_and_generic_structs() {
    assert!(Pair(3, vec![1.5]).validate().is_ok());
    let errors = Pair::<f64>(10, vec![]).validate().unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
    assert_eq!(fields, ["0", "1"]);
}

/// With `#[protein]` on top: both expansions see the struct; the helpers are gone by the time
/// the rkyv derives run.
#[protein]
#[Val::schema]
struct Message {
    #[Val::length(max = 5)]
    body: String,
}

#[test]
fn composes_with_protein() {
    let m = Message { body: "hi".into() };
    let bytes = cell_sdk::codec::to_bytes(&m).unwrap();
    let back: Message = cell_sdk::codec::from_bytes(&bytes).unwrap();
    assert!(back.validate().is_ok());
    assert!(
        Message {
            body: "too long".into()
        }
        .validate()
        .is_err()
    );
}

/// Length counts chars for strings, so multi-byte text is not over-counted.
#[Val::schema]
struct Name(#[Val::length(min = 2, max = 3)] String);

#[test]
fn length_counts_characters() {
    assert!(Name("héé".into()).validate().is_ok());
    assert!(Name("h".into()).validate().is_err());
}
