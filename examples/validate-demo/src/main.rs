//! A consumer of the `validate` provider: `cargo run -p validate-demo`.
//!
//! It depends on `validate` under another name (`checks`), brings it in as `Val` with
//! `cell_remote!`, and validates a few signups, printing every failed rule.

use cell_sdk::{cell_remote, protein};

cell_remote!(Val = "validate");

/// A signup form: a protein (it can cross a process boundary) with validation rules.
#[protein]
#[Val::schema]
struct Signup {
    #[Val::email]
    email: String,
    #[Val::length(min = 2, max = 32)]
    name: String,
    #[Val::range(13..=130)]
    age: u8,
    #[Val::non_empty]
    interests: Vec<String>,
    /// Optional: checked only when present.
    #[Val::custom(no_spaces)]
    handle: Option<String>,
}

fn no_spaces(s: &String) -> Result<(), String> {
    if s.contains(' ') {
        Err(format!("must not contain spaces (got {s:?})"))
    } else {
        Ok(())
    }
}

fn main() {
    let signups = [
        Signup {
            email: "ada@example.com".into(),
            name: "Ada".into(),
            age: 36,
            interests: vec!["engines".into()],
            handle: Some("ada".into()),
        },
        Signup {
            email: "not-an-email".into(),
            name: "B".into(),
            age: 9,
            interests: vec![],
            handle: Some("b b".into()),
        },
    ];
    for signup in &signups {
        match signup.validate() {
            Ok(()) => println!("{}: ok", signup.email),
            Err(errors) => {
                println!("{}: {} problem(s)", signup.email, errors.len());
                for e in errors {
                    println!("  - {e}");
                }
            }
        }
    }
    // `Val::is_email` is part of the provider's declared API, next to its macros.
    println!("is_email(\"x@y.z\") = {}", Val::is_email("x@y.z"));
}
