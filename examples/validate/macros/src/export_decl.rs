//! Generated copy of the `export!` declaration in this provider's `lib.rs`: the macros
//! read their schema from it (a proc macro must not read files outside its package).
//! Do not edit: a test fails when it is stale and prints its new contents.

/// The declaration's text.
pub(crate) const EXPORT_DECL: &str = r#"cell_sdk::export! {
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
}"#;
