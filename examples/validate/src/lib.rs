//! `validate`: a provider cell that is not a database. It proves the export contract is
//! general: a consumer picks an alias and gets declarative validation.
//!
//! - `#[Val::schema]` on a struct generates `validate(&self) -> Result<(), Vec<ValidationError>>`
//!   (an inherent method and the [`Validate`] trait), checking every field helper and reporting
//!   *all* failures, not just the first.
//! - Field helpers: `#[Val::email]`, `#[Val::range(1..=100)]` (any range expression),
//!   `#[Val::length(min = 1, max = 64)]` (chars for strings, items for collections),
//!   `#[Val::non_empty]`, `#[Val::custom(path::to_fn)]` (a `fn(&T) -> Result<(), String>`).
//!   On an `Option<T>` field a helper checks the value when it is `Some`.
//!
//! **Key design decision:** the runtime checks live here, as plain functions the expansion calls
//! through the path `cell-resolver` finds (so a consumer may rename this crate); the macro crate
//! only wires fields to checks. **What it is not:** a regex or i18n validation library.
//!
//! # Example
//! ```
//! use cell_sdk::cell_remote;
//! cell_remote!(Val = "validate");
//!
//! #[Val::schema]
//! pub struct Signup {
//!     #[Val::email]
//!     pub email: String,
//!     #[Val::length(min = 2, max = 64)]
//!     pub name: String,
//!     #[Val::range(13..=130)]
//!     pub age: u8,
//! }
//!
//! let ok = Signup { email: "ada@example.com".into(), name: "Ada".into(), age: 36 };
//! assert!(ok.validate().is_ok());
//!
//! let bad = Signup { email: "ada.example.com".into(), name: "A".into(), age: 200 };
//! let errors = bad.validate().unwrap_err();
//! let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
//! assert_eq!(fields, ["email", "name", "age"]);
//! assert_eq!(errors[2].to_string(), "age: must be in 13..=130 (got 200)");
//! ```

// The macros' paths name this crate through the resolver, which answers `validate` inside
// this package's own tests and doctests; this line makes that name valid in the lib too.
extern crate self as validate;

use std::fmt;

cell_sdk::export! {
    format = 1;
    cell = "validate";
    macros = validate_macros;

    attribute schema {
        helpers = [
            email,
            non_empty,
            range(_: expr),
            length(min: int?, max: int?),
            custom(_: expr),
        ];
    }

    api = [Validate, ValidationError, is_email];
}

/// A type whose values can be checked against the rules written on its fields.
/// `#[Val::schema]` implements it.
pub trait Validate {
    /// Checks every rule; returns every failure, in field order.
    ///
    /// # Errors
    /// One [`ValidationError`] per failed rule.
    fn validate(&self) -> Result<(), Vec<ValidationError>>;
}

/// One failed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// The field, as written in the struct (`"0"` for a tuple field).
    pub field: &'static str,
    /// The rule: `"email"`, `"non_empty"`, `"range"`, `"length"` or `"custom"`.
    pub rule: &'static str,
    /// What is wrong, for a human.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}

/// A pragmatic email check: one `@`, a non-empty local part without spaces, and a domain with
/// a dot, no empty labels and no spaces. (Full RFC 5322 is not the point of this example.)
///
/// ```
/// assert!(validate::is_email("ada@example.com"));
/// assert!(!validate::is_email("ada@example"));
/// assert!(!validate::is_email("a b@example.com"));
/// ```
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let clean = |p: &str| !p.is_empty() && !p.chars().any(|c| c.is_whitespace() || c == '@');
    clean(local)
        && clean(domain)
        && domain.contains('.')
        && domain.split('.').all(|l| !l.is_empty())
}

/// Used by the code `#[schema]` generates. Not a stable API.
#[doc(hidden)]
pub mod __private {
    use std::fmt::Debug;
    use std::ops::RangeBounds;

    use super::ValidationError;

    /// Something with a length: chars for strings, items for collections.
    pub trait Length {
        /// The length the `length` and `non_empty` rules check.
        fn length(&self) -> usize;
    }

    impl Length for str {
        fn length(&self) -> usize {
            self.chars().count()
        }
    }
    impl Length for String {
        fn length(&self) -> usize {
            self.chars().count()
        }
    }
    impl<T> Length for [T] {
        fn length(&self) -> usize {
            self.len()
        }
    }
    impl<T> Length for Vec<T> {
        fn length(&self) -> usize {
            self.len()
        }
    }
    impl<K, V, S> Length for std::collections::HashMap<K, V, S> {
        fn length(&self) -> usize {
            self.len()
        }
    }
    impl<K, V> Length for std::collections::BTreeMap<K, V> {
        fn length(&self) -> usize {
            self.len()
        }
    }
    impl<T: Length + ?Sized> Length for &T {
        fn length(&self) -> usize {
            (**self).length()
        }
    }

    fn fail(
        errors: &mut Vec<ValidationError>,
        field: &'static str,
        rule: &'static str,
        message: String,
    ) {
        errors.push(ValidationError {
            field,
            rule,
            message,
        });
    }

    /// `#[email]`
    pub fn email<T: AsRef<str> + ?Sized>(
        errors: &mut Vec<ValidationError>,
        field: &'static str,
        value: &T,
    ) {
        if !super::is_email(value.as_ref()) {
            fail(
                errors,
                field,
                "email",
                format!("must be an email address (got {:?})", value.as_ref()),
            );
        }
    }

    /// `#[non_empty]`
    pub fn non_empty<T: Length + ?Sized>(
        errors: &mut Vec<ValidationError>,
        field: &'static str,
        value: &T,
    ) {
        if value.length() == 0 {
            fail(errors, field, "non_empty", "must not be empty".to_owned());
        }
    }

    /// `#[range(r)]`; `shown` is the range as the user wrote it.
    pub fn range<T: PartialOrd + Debug, R: RangeBounds<T>>(
        errors: &mut Vec<ValidationError>,
        field: &'static str,
        value: &T,
        range: R,
        shown: &str,
    ) {
        if !range.contains(value) {
            fail(
                errors,
                field,
                "range",
                format!("must be in {shown} (got {value:?})"),
            );
        }
    }

    /// `#[length(min = .., max = ..)]`
    pub fn length<T: Length + ?Sized>(
        errors: &mut Vec<ValidationError>,
        field: &'static str,
        value: &T,
        min: Option<usize>,
        max: Option<usize>,
    ) {
        let n = value.length();
        let message = match (min, max) {
            (Some(lo), Some(hi)) if n < lo || n > hi => {
                format!("length must be {lo}..={hi} (got {n})")
            }
            (Some(lo), None) if n < lo => format!("length must be at least {lo} (got {n})"),
            (None, Some(hi)) if n > hi => format!("length must be at most {hi} (got {n})"),
            _ => return,
        };
        fail(errors, field, "length", message);
    }

    /// `#[custom(f)]`
    pub fn custom<T: ?Sized>(
        errors: &mut Vec<ValidationError>,
        field: &'static str,
        value: &T,
        check: impl FnOnce(&T) -> Result<(), String>,
    ) {
        if let Err(message) = check(value) {
            fail(errors, field, "custom", message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_check_is_pragmatic() {
        for good in ["a@b.co", "first.last+tag@sub.example.org"] {
            assert!(is_email(good), "{good}");
        }
        for bad in [
            "", "@b.co", "a@", "a@b", "a@@b.co", "a@b..co", "a @b.co", "a@.co",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn length_counts_chars_not_bytes() {
        let mut errors = Vec::new();
        __private::length(&mut errors, "name", "ééé", Some(1), Some(3));
        assert!(errors.is_empty());
        __private::length(&mut errors, "name", "éééé", None, Some(3));
        assert_eq!(errors[0].message, "length must be at most 3 (got 4)");
    }
}
