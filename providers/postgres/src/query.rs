//! The typed query builder: `Postgres::query::<User>().where_eq(User::email, e).all()`.
//!
//! Columns are [`Col`] constants that `#[Postgres::table]` generates on the struct
//! (`User::email: Col<User, String>`): a column of another table, or a value of the wrong
//! type, does not compile. Values are always statement parameters.

use std::marker::PhantomData;

use crate::column::{Column, Param};
use crate::db::{Pg, Tx};
use crate::error::{Error, Result};
use crate::table::Table;

/// A column of table `T` holding values of type `V`, generated as an associated constant per
/// field (`User::email`).
pub struct Col<T, V> {
    name: &'static str,
    _types: PhantomData<fn() -> (T, V)>,
}

impl<T, V> Clone for Col<T, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, V> Copy for Col<T, V> {}

impl<T, V> std::fmt::Debug for Col<T, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Col({})", self.name)
    }
}

impl<T, V> Col<T, V> {
    /// Used by `#[Postgres::table]`.
    #[doc(hidden)]
    pub const fn new(name: &'static str) -> Col<T, V> {
        Col {
            name,
            _types: PhantomData,
        }
    }

    /// The column's SQL name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

/// Where a query runs.
pub(crate) enum Target {
    Current,
    Pg(Pg),
    Tx(Tx),
}

/// A value kept by a query until it runs.
trait Value: Send + Sync {
    fn encode(&self) -> std::result::Result<Param<'_>, String>;
}

impl<V: Column + Send + Sync> Value for V {
    fn encode(&self) -> std::result::Result<Param<'_>, String> {
        Column::encode(self)
    }
}

/// A query on `T`'s table, built with [`where_eq`](Query::where_eq),
/// [`order_by`](Query::order_by), [`limit`](Query::limit), run with [`all`](Query::all) or
/// [`first`](Query::first).
pub struct Query<T: Table> {
    target: Target,
    filters: Vec<(&'static str, Box<dyn Value>)>,
    order: Vec<(&'static str, bool)>,
    limit: Option<u32>,
    _table: PhantomData<fn() -> T>,
}

impl<T: Table> std::fmt::Debug for Query<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Query").field("sql", &self.sql()).finish()
    }
}

impl<T: Table> Query<T> {
    pub(crate) fn on(target: Target) -> Query<T> {
        Query {
            target,
            filters: Vec::new(),
            order: Vec::new(),
            limit: None,
            _table: PhantomData,
        }
    }

    /// Keeps the rows whose `col` equals `value` (`IS NULL` for a `None`).
    pub fn where_eq<V>(mut self, col: Col<T, V>, value: impl Into<V>) -> Query<T>
    where
        V: Column + Send + Sync + 'static,
    {
        self.filters.push((col.name, Box::new(value.into())));
        self
    }

    /// Orders by `col`, ascending (after any earlier `order_by`).
    pub fn order_by<V>(mut self, col: Col<T, V>) -> Query<T> {
        self.order.push((col.name, false));
        self
    }

    /// Orders by `col`, descending.
    pub fn order_by_desc<V>(mut self, col: Col<T, V>) -> Query<T> {
        self.order.push((col.name, true));
        self
    }

    /// Returns at most `n` rows.
    pub fn limit(mut self, n: u32) -> Query<T> {
        self.limit = Some(n);
        self
    }

    /// The statement this query runs (`$n` for values; `NULL` comparisons as `IS NULL`).
    pub fn sql(&self) -> String {
        self.build(T::SQL.select, &self.nulls(), true)
    }

    fn nulls(&self) -> Vec<bool> {
        self.filters
            .iter()
            .map(|(_, v)| v.encode().map(|p| p.is_null()).unwrap_or(false))
            .collect()
    }

    /// `head` + the filters, then (if `shape`) the order and the limit.
    fn build(&self, head: &str, nulls: &[bool], shape: bool) -> String {
        let mut sql = head.to_owned();
        let mut n = 0;
        for (i, (name, _)) in self.filters.iter().enumerate() {
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            if nulls.get(i).copied().unwrap_or(false) {
                sql.push_str(&format!("\"{name}\" IS NULL"));
            } else {
                n += 1;
                sql.push_str(&format!("\"{name}\" = ${n}"));
            }
        }
        if !shape {
            return sql;
        }
        for (i, (name, desc)) in self.order.iter().enumerate() {
            sql.push_str(if i == 0 { " ORDER BY " } else { ", " });
            sql.push_str(&format!(
                "\"{name}\" {}",
                if *desc { "DESC" } else { "ASC" }
            ));
        }
        if let Some(limit) = self.limit {
            // A u32 literal: no parameter needed, nothing to inject.
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        sql
    }

    /// Every matching record.
    ///
    /// # Errors
    /// [`Error::Encode`] for a value no column can hold; [`Error::Decode`]; connection errors.
    pub async fn all(self) -> Result<Vec<T>> {
        let rows = self.rows(T::SQL.select, true).await?;
        rows.iter().map(T::from_row).collect()
    }

    /// The number of matching records (`SELECT count(*)`, the filters only: order and limit
    /// do not apply).
    ///
    /// # Errors
    /// As [`Query::all`].
    pub async fn count(self) -> Result<u64> {
        let head = format!("SELECT count(*) FROM \"{}\"", T::TABLE);
        let rows = self.rows(&head, false).await?;
        let n: i64 = rows
            .first()
            .and_then(|r| r.try_get(0).ok())
            .unwrap_or_default();
        u64::try_from(n).map_err(|_| Error::Decode {
            table: T::TABLE,
            column: "count(*)",
            reason: format!("{n} is negative"),
        })
    }

    async fn rows(&self, head: &str, shape: bool) -> Result<Vec<tokio_postgres::Row>> {
        let mut params = Vec::new();
        for (name, value) in &self.filters {
            let p = value.encode().map_err(|reason| Error::Encode {
                table: T::TABLE,
                column: name,
                reason,
            })?;
            params.push(p);
        }
        let nulls: Vec<bool> = params.iter().map(Param::is_null).collect();
        params.retain(|p| !p.is_null());
        let sql = self.build(head, &nulls, shape);
        match &self.target {
            Target::Current => crate::current()?.run_rows(&sql, &params).await,
            Target::Pg(pg) => pg.run_rows(&sql, &params).await,
            Target::Tx(tx) => tx.run_rows(&sql, &params).await,
        }
    }

    /// The first matching record (in the query's order).
    ///
    /// # Errors
    /// As [`Query::all`].
    pub async fn first(self) -> Result<Option<T>> {
        Ok(self.limit(1).all().await?.into_iter().next())
    }
}
