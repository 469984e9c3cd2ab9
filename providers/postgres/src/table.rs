//! What `#[Postgres::table]` implements: [`Table`] (columns, statements, row encoding) and
//! [`Tables`] (what [`Pg::migrate`](crate::Pg::migrate) creates), and the DDL built from them.

use tokio_postgres::Row;

use crate::column::Param;
use crate::error::Result;

/// A struct stored as the rows of one PostgreSQL table. Implemented by `#[Postgres::table]`;
/// not meant to be implemented by hand.
pub trait Table: Sized + Send + Sync + 'static {
    /// The primary key's type.
    type Key: crate::Column + Send + Sync + 'static;
    /// The table's name.
    const TABLE: &'static str;
    /// The columns, in field order.
    const COLUMNS: &'static [ColumnDef];
    /// The position of the primary key in [`Table::COLUMNS`].
    const KEY: usize;
    /// The statements, with `$n` parameters only.
    const SQL: Statements;

    /// This record's key.
    fn key(&self) -> &Self::Key;

    /// The parameters of [`Statements::insert`] (every column but a `serial` one).
    ///
    /// # Errors
    /// [`Error::Encode`](crate::Error::Encode) for a value a column cannot hold.
    fn insert_params(&self) -> Result<Vec<Param<'_>>>;

    /// The parameters of [`Statements::update`] (the other columns, then the key).
    ///
    /// # Errors
    /// [`Error::Encode`](crate::Error::Encode).
    fn update_params(&self) -> Result<Vec<Param<'_>>>;

    /// A record from a row of [`Statements::select`]'s columns.
    ///
    /// # Errors
    /// [`Error::Decode`](crate::Error::Decode) for a value that does not fit its field.
    fn from_row(row: &Row) -> Result<Self>;
}

/// One column of a [`Table`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnDef {
    /// The column's name (the field's, or `#[Postgres::column(name = …)]`).
    pub name: &'static str,
    /// Its type in DDL (`BIGINT`, `VARCHAR(255)`, `BIGSERIAL`).
    pub sql_type: &'static str,
    /// Whether it may be NULL.
    pub nullable: bool,
    /// The primary key.
    pub primary_key: bool,
    /// `UNIQUE`.
    pub unique: bool,
    /// A (non-unique) index.
    pub index: bool,
}

/// A table's statements, generated at compile time.
#[derive(Debug, Clone, Copy)]
pub struct Statements {
    /// `INSERT … RETURNING key`.
    pub insert: &'static str,
    /// `SELECT columns FROM table WHERE key = $1`.
    pub get: &'static str,
    /// `UPDATE table SET … WHERE key = $n`.
    pub update: &'static str,
    /// `DELETE FROM table WHERE key = $1`.
    pub delete: &'static str,
    /// `SELECT columns FROM table` (the query builder appends to it).
    pub select: &'static str,
}

/// One table as [`Pg::migrate`](crate::Pg::migrate) creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// The table's name.
    pub name: &'static str,
    /// `CREATE TABLE …;` and its `CREATE INDEX …;` statements.
    pub ddl: String,
    /// A hash of the DDL (hex): what the database stores to detect a changed struct.
    pub fingerprint: String,
}

impl TableSchema {
    /// The schema of `T`.
    pub fn of<T: Table>() -> TableSchema {
        let ddl = ddl(T::TABLE, T::COLUMNS);
        let hash = cell_sdk::fingerprint::mix_str(cell_sdk::fingerprint::SEED, &ddl);
        TableSchema {
            name: T::TABLE,
            fingerprint: format!("{hash:016x}"),
            ddl,
        }
    }
}

/// A set of tables to migrate together: one `#[Postgres::table]` type, or a tuple of them
/// (`(Customer, Order, Stock)`).
pub trait Tables {
    /// Appends the schemas, in order.
    fn schemas(out: &mut Vec<TableSchema>);
}

macro_rules! tuples {
    ($($name:ident)+) => {
        impl<$($name: Tables),+> Tables for ($($name,)+) {
            fn schemas(out: &mut Vec<TableSchema>) {
                $($name::schemas(out);)+
            }
        }
    };
}
tuples!(A);
tuples!(A B);
tuples!(A B C);
tuples!(A B C D);
tuples!(A B C D E);
tuples!(A B C D E F);
tuples!(A B C D E F G);
tuples!(A B C D E F G H);

/// The DDL of every table of `S`, as `migrate` applies it (what `cell-postgres schema` and
/// `cli::print_schema` (feature `cli`) print).
pub fn schema_sql<S: Tables>() -> String {
    let mut schemas = Vec::new();
    S::schemas(&mut schemas);
    schemas
        .iter()
        .map(|s| s.ddl.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `CREATE TABLE` and `CREATE INDEX` for `columns`. Names were checked by the macro (ASCII
/// letters, digits, `_`), so quoting them is enough.
fn ddl(table: &str, columns: &[ColumnDef]) -> String {
    let mut out = format!("CREATE TABLE \"{table}\" (\n");
    let lines: Vec<String> = columns
        .iter()
        .map(|c| {
            let mut line = format!("    \"{}\" {}", c.name, c.sql_type);
            if c.primary_key {
                line.push_str(" PRIMARY KEY");
            } else {
                if !c.nullable {
                    line.push_str(" NOT NULL");
                }
                if c.unique {
                    line.push_str(" UNIQUE");
                }
            }
            line
        })
        .collect();
    out.push_str(&lines.join(",\n"));
    out.push_str("\n);\n");
    for c in columns.iter().filter(|c| c.index && !c.primary_key) {
        out.push_str(&format!(
            "CREATE INDEX \"{table}_{name}_idx\" ON \"{table}\" (\"{name}\");\n",
            name = c.name
        ));
    }
    out
}
