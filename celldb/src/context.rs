//! Which database the free functions (`DB::insert`, `User::get`, …) use: the task-local one set
//! by [`Db::scope`](crate::Db::scope), else the process's default database, opened lazily.
//!
//! Remote mode: when `$CELLDB_URL` is set (`unix:/path.sock`, `tcp://host:port` with
//! `$CELL_SECRET`, `cell:<name>`), the default database is that celldb server
//! ([`Db::connect`](crate::Db::connect)) instead of a local directory. Nothing else changes.
//!
//! Default location: `$CELL_DATA_DIR/<cell>/celldb` when `CELL_DATA_DIR` is set, else
//! `$XDG_DATA_HOME/cell/<cell>/celldb`, else `$HOME/.local/share/cell/<cell>/celldb`, where
//! `<cell>` is the executable's file name (`orders` for `cargo run -p orders`). It does not
//! depend on the working directory, so `cargo run` from anywhere finds the same data.

use crate::db::Db;
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::Mutex;

tokio::task_local! {
    pub(crate) static CURRENT: Db;
}

static DEFAULT: Mutex<Option<Db>> = Mutex::new(None);

/// The database the free functions use right now: the task-local one (see
/// [`Db::scope`](crate::Db::scope)) or the default one, opened on first use.
///
/// # Errors
/// [`Error::Default`] when the default database cannot be opened (e.g. it is locked).
pub fn current() -> Result<Db> {
    if let Ok(db) = CURRENT.try_with(Db::clone) {
        return Ok(db);
    }
    let mut default = DEFAULT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(db) = default.as_ref() {
        return Ok(db.clone());
    }
    let db = if let Some(url) = std::env::var_os(crate::remote::URL_ENV) {
        let url = url.to_string_lossy();
        let db = Db::connect(&url)
            .map_err(|e| Error::Default(format!("${}={url}: {e}", crate::remote::URL_ENV)))?;
        tracing::info!(%url, "celldb: the default database is a celldb server");
        db
    } else {
        let path = default_path();
        let db = Db::open(&path).map_err(|e| Error::Default(format!("{}: {e}", path.display())))?;
        tracing::info!(path = %path.display(), "celldb: opened the default database");
        db
    };
    *default = Some(db.clone());
    Ok(db)
}

/// Makes `db` the process's default database (instead of the lazily opened one).
pub fn set_default(db: Db) {
    *DEFAULT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(db);
}

/// Where the default database lives (see the module docs).
pub fn default_path() -> PathBuf {
    let cell = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "cell".into());
    let root = if let Some(dir) = std::env::var_os("CELL_DATA_DIR") {
        PathBuf::from(dir)
    } else if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        PathBuf::from(dir).join("cell")
    } else if let Some(home) = std::env::var_os("HOME") {
        PathBuf::from(home).join(".local/share/cell")
    } else {
        PathBuf::from(".cell-data")
    };
    root.join(cell).join("celldb")
}
