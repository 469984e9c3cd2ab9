//! Generated copy of the `export!` declaration in this provider's `lib.rs`: the macros
//! read their schema from it (a proc macro must not read files outside its package).
//! Do not edit: a test fails when it is stale and prints its new contents.

/// The declaration's text.
pub(crate) const EXPORT_DECL: &str = r#"cell_sdk::export! {
    format = 1;
    cell = "celldb";
    macros = celldb_macros;

    attribute persist {
        helpers = [key, index, unique, auto_inc];
        args {
            table: str?,
            durability: "sync" | "buffered" = "sync",
            prev: expr?,
            replicate: "local" | "raft" = "local",
        }
    }
    // The helpers are macros too, so one written outside `persist` gets a clear error from
    // celldb-macros instead of rustc's "cannot find attribute".
    attribute key {}
    attribute index {}
    attribute unique {}
    attribute auto_inc {}

    api = [insert, get, update, upsert, delete, scan, count, transaction, Db, Tx, Error, Durability, Replicate];
}"#;
