//! Generated copy of the `export!` declaration in this provider's `lib.rs`: the macros
//! read their schema from it (a proc macro must not read files outside its package).
//! Do not edit: a test fails when it is stale and prints its new contents.

/// The declaration's text.
pub(crate) const EXPORT_DECL: &str = r#"cell_sdk::export! {
    format = 1;
    cell = "cell-postgres";
    macros = cell_postgres_macros;

    attribute table {
        helpers = [primary_key, serial, unique, index, varchar(_: int), column(name: str)];
        args { name: str? }
    }
    // The helpers are macros too, so one written outside `table` gets a clear error (and its
    // docs show on hover).
    attribute primary_key {}
    attribute serial {}
    attribute unique {}
    attribute index {}
    attribute varchar {}
    attribute column {}

    api = [insert, get, update, delete, query, transaction, migrate, Pg, Tx, Error, Result, Timestamp, Col, Query];
}"#;
