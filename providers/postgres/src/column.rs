//! How a field's Rust type maps to a PostgreSQL column: the [`Column`] trait and its impls.
//!
//! | Rust | PostgreSQL | notes |
//! |---|---|---|
//! | `bool` | `BOOLEAN` | |
//! | `i8`, `i16`, `u8` | `SMALLINT` | |
//! | `i32`, `u16` | `INTEGER` | |
//! | `i64`, `u32` | `BIGINT` | |
//! | `u64` | `BIGINT`, range-checked | above `i64::MAX`: [`Error::Encode`](crate::Error::Encode); negative when read: [`Error::Decode`](crate::Error::Decode) |
//! | `f32`, `f64` | `REAL`, `DOUBLE PRECISION` | |
//! | `String` | `TEXT` (or `VARCHAR(n)`) | a NUL (U+0000) is [`Error::Encode`](crate::Error::Encode): `text` cannot hold it |
//! | `Vec<u8>` | `BYTEA` | |
//! | [`Timestamp`] | `TIMESTAMPTZ` | microseconds, UTC; converts to and from chrono's `DateTime<Utc>` |
//! | `Option<T>` | `T`'s type, nullable | |
//!
//! Anything else — a nested protein, a tuple, a `usize` — does not implement [`Column`], and the
//! compiler says so at the field. Nested proteins are deliberately **not** stored as `jsonb`:
//! a protein is an rkyv type without serde, and a relation is better modelled as its own table.
//!
//! `u64` is a `BIGINT`, not `NUMERIC(20,0)`: keys must stay fast to index and compare, and the
//! upper half of the range is refused with an error rather than wrapped by an `as` cast.

use bytes::BytesMut;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};

/// A Rust type that can be stored in one PostgreSQL column.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in a PostgreSQL column",
    label = "no column type for this field",
    note = "supported: bool, i8–i64, u8–u64 (u64 as a range-checked BIGINT), f32, f64, String, \
            Vec<u8>, cell_postgres::Timestamp, and Option of them",
    note = "a nested struct is not stored as jsonb: give it its own table and keep its key here"
)]
pub trait Column: Sized {
    /// The column type in DDL (`BIGINT`).
    const SQL_TYPE: &'static str;
    /// Whether the column may hold NULL (`Option`).
    const NULLABLE: bool = false;
    /// Whether the type is text (may be declared `VARCHAR(n)`).
    const TEXT: bool = false;
    /// The `SERIAL` type for an auto-generated key of this type, if it can be one.
    const SERIAL_TYPE: Option<&'static str> = None;
    /// What the driver reads.
    type Raw: for<'a> FromSql<'a>;

    /// The value as a statement parameter.
    ///
    /// # Errors
    /// The reason it cannot be stored.
    fn encode(&self) -> Result<Param<'_>, String>;

    /// The value from what the driver read.
    ///
    /// # Errors
    /// The reason it does not fit.
    fn from_raw(raw: Self::Raw) -> Result<Self, String>;

    /// Reads column `idx` of `row`.
    ///
    /// # Errors
    /// A column of another type, or a value that does not fit.
    fn decode(row: &Row, idx: usize) -> Result<Self, String> {
        let raw = row.try_get::<usize, Self::Raw>(idx).map_err(|e| {
            let mut msg = e.to_string();
            if let Some(s) = std::error::Error::source(&e) {
                msg = format!("{msg}: {s}");
            }
            msg
        })?;
        Self::from_raw(raw)
    }
}

/// One statement parameter: a value the driver encodes (type-checked against the column by the
/// driver), or NULL.
#[derive(Debug)]
pub struct Param<'a>(Option<Box<dyn ToSql + Sync + Send + 'a>>);

impl<'a> Param<'a> {
    /// A value.
    pub fn new(value: impl ToSql + Sync + Send + 'a) -> Param<'a> {
        Param(Some(Box::new(value)))
    }

    /// NULL.
    pub fn null() -> Param<'a> {
        Param(None)
    }

    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        self.0.is_none()
    }
}

impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            // `to_sql` needs a sized type; the checked call is the one a trait object has.
            Some(v) => v.to_sql_checked(ty, out),
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_: &Type) -> bool {
        // The real check is the inner value's, in `to_sql_checked`.
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            Some(v) => v.to_sql_checked(ty, out),
            None => Ok(IsNull::Yes),
        }
    }
}

/// Borrows parameters as the driver wants them.
pub(crate) fn refs<'p>(params: &'p [Param<'_>]) -> Vec<&'p (dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

macro_rules! direct {
    ($($ty:ty => $sql:literal $(, serial $serial:literal)?;)*) => {$(
        impl Column for $ty {
            const SQL_TYPE: &'static str = $sql;
            $(const SERIAL_TYPE: Option<&'static str> = Some($serial);)?
            type Raw = $ty;
            fn encode(&self) -> Result<Param<'_>, String> {
                Ok(Param::new(*self))
            }
            fn from_raw(raw: $ty) -> Result<Self, String> {
                Ok(raw)
            }
        }
    )*};
}

direct! {
    bool => "BOOLEAN";
    i16 => "SMALLINT", serial "SMALLSERIAL";
    i32 => "INTEGER", serial "SERIAL";
    i64 => "BIGINT", serial "BIGSERIAL";
    f32 => "REAL";
    f64 => "DOUBLE PRECISION";
}

/// Integers stored in a wider signed column: always fit when written, range-checked when read.
macro_rules! widened {
    ($($ty:ty => $raw:ty, $sql:literal $(, serial $serial:literal)?;)*) => {$(
        impl Column for $ty {
            const SQL_TYPE: &'static str = $sql;
            $(const SERIAL_TYPE: Option<&'static str> = Some($serial);)?
            type Raw = $raw;
            fn encode(&self) -> Result<Param<'_>, String> {
                Ok(Param::new(<$raw>::from(*self)))
            }
            fn from_raw(raw: $raw) -> Result<Self, String> {
                <$ty>::try_from(raw).map_err(|_| {
                    format!("{raw} does not fit `{}`", stringify!($ty))
                })
            }
        }
    )*};
}

widened! {
    i8 => i16, "SMALLINT";
    u8 => i16, "SMALLINT";
    u16 => i32, "INTEGER", serial "SERIAL";
    u32 => i64, "BIGINT", serial "BIGSERIAL";
}

impl Column for u64 {
    const SQL_TYPE: &'static str = "BIGINT";
    const SERIAL_TYPE: Option<&'static str> = Some("BIGSERIAL");
    type Raw = i64;
    fn encode(&self) -> Result<Param<'_>, String> {
        // PostgreSQL has no unsigned types: the upper half of u64 is refused, never wrapped.
        i64::try_from(*self)
            .map(Param::new)
            .map_err(|_| format!("{self} is above {} (a u64 is stored as a BIGINT)", i64::MAX))
    }
    fn from_raw(raw: i64) -> Result<Self, String> {
        u64::try_from(raw).map_err(|_| format!("{raw} is negative, and the field is a u64"))
    }
}

impl Column for String {
    const SQL_TYPE: &'static str = "TEXT";
    const TEXT: bool = true;
    type Raw = String;
    fn encode(&self) -> Result<Param<'_>, String> {
        if let Some(at) = self.find('\0') {
            return Err(format!(
                "the string holds a NUL character (U+0000) at byte {at}, which PostgreSQL \
                 text cannot store"
            ));
        }
        Ok(Param::new(self.as_str()))
    }
    fn from_raw(raw: String) -> Result<Self, String> {
        Ok(raw)
    }
}

impl Column for Vec<u8> {
    const SQL_TYPE: &'static str = "BYTEA";
    type Raw = Vec<u8>;
    fn encode(&self) -> Result<Param<'_>, String> {
        Ok(Param::new(self.as_slice()))
    }
    fn from_raw(raw: Vec<u8>) -> Result<Self, String> {
        Ok(raw)
    }
}

impl<T: Column> Column for Option<T> {
    const SQL_TYPE: &'static str = T::SQL_TYPE;
    const NULLABLE: bool = true;
    const TEXT: bool = T::TEXT;
    type Raw = Option<T::Raw>;
    fn encode(&self) -> Result<Param<'_>, String> {
        match self {
            Some(v) => v.encode(),
            None => Ok(Param::null()),
        }
    }
    fn from_raw(raw: Option<T::Raw>) -> Result<Self, String> {
        raw.map(T::from_raw).transpose()
    }
}

/// A point in time, stored as `TIMESTAMPTZ` (microsecond precision, UTC).
///
/// A `#[protein]` (so it can be a field of one); converts to and from chrono's
/// `DateTime<Utc>`.
///
/// ```
/// let t = cell_postgres::Timestamp::from_micros(1_700_000_000_000_000);
/// assert_eq!(t.to_chrono().to_rfc3339(), "2023-11-14T22:13:20+00:00");
/// assert_eq!(cell_postgres::Timestamp::from(t.to_chrono()), t);
/// ```
#[cell_sdk::protein]
#[derive(Copy, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    micros: i64,
}

impl Timestamp {
    /// Microseconds since 1970-01-01T00:00:00Z.
    pub const fn from_micros(micros: i64) -> Timestamp {
        Timestamp { micros }
    }

    /// Microseconds since 1970-01-01T00:00:00Z.
    pub const fn micros(self) -> i64 {
        self.micros
    }

    /// Now, truncated to microseconds (what the column keeps).
    pub fn now() -> Timestamp {
        Timestamp::from(chrono::Utc::now())
    }

    /// As chrono's `DateTime<Utc>` (saturating at chrono's range, far beyond PostgreSQL's).
    pub fn to_chrono(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_micros(self.micros).unwrap_or(if self.micros < 0 {
            chrono::DateTime::<chrono::Utc>::MIN_UTC
        } else {
            chrono::DateTime::<chrono::Utc>::MAX_UTC
        })
    }
}

impl From<chrono::DateTime<chrono::Utc>> for Timestamp {
    fn from(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
        Timestamp::from_micros(t.timestamp_micros())
    }
}

impl Column for Timestamp {
    const SQL_TYPE: &'static str = "TIMESTAMPTZ";
    type Raw = chrono::DateTime<chrono::Utc>;
    fn encode(&self) -> Result<Param<'_>, String> {
        Ok(Param::new(self.to_chrono()))
    }
    fn from_raw(raw: Self::Raw) -> Result<Self, String> {
        Ok(Timestamp::from(raw))
    }
}

/// What `get` and `delete` accept for a key of type `K`: the key itself, a reference to it,
/// a `&str` for a `String` key, a `&[u8]` for a `Vec<u8>` key (and integer literals infer to
/// the key's type: `get::<User>(1)`).
pub trait KeyArg<K> {
    /// The key.
    fn into_key(self) -> K;
}

impl<K: Column> KeyArg<K> for K {
    fn into_key(self) -> K {
        self
    }
}

impl<K: Column + Clone> KeyArg<K> for &K {
    fn into_key(self) -> K {
        self.clone()
    }
}

impl KeyArg<String> for &str {
    fn into_key(self) -> String {
        self.to_owned()
    }
}

impl KeyArg<Vec<u8>> for &[u8] {
    fn into_key(self) -> Vec<u8> {
        self.to_vec()
    }
}
