//! Versions of crates present in the local cargo cache, for the version-skew check.
//!
//! Method (never constructing per-hash paths, whose hash changed in cargo 1.85): list
//! `$CARGO_HOME/registry/cache/*/` (downloaded `NAME-VERSION.crate` files) and
//! `$CARGO_HOME/registry/src/*/` (extracted `NAME-VERSION/` directories), whatever the
//! registry directories are called, and split each entry at the first `-` whose remainder
//! parses as a semver version. `CARGO_HOME` defaults to `$HOME/.cargo`. Unreadable directories
//! count as empty: the check then says nothing rather than something false.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use cargo_metadata::semver::Version;

/// Crate name → versions present in the cache.
#[derive(Debug, Default, Clone)]
pub struct CacheListing {
    versions: BTreeMap<String, BTreeSet<Version>>,
}

impl CacheListing {
    /// Lists the cache under `cargo_home` (see the module docs for the method).
    pub fn read(cargo_home: &Path) -> CacheListing {
        let mut listing = CacheListing::default();
        for sub in ["cache", "src"] {
            let Ok(registries) = std::fs::read_dir(cargo_home.join("registry").join(sub)) else {
                continue;
            };
            for registry in registries.flatten() {
                let Ok(entries) = std::fs::read_dir(registry.path()) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let file_name = entry.file_name();
                    let Some(name) = file_name.to_str() else {
                        continue;
                    };
                    let name = name.strip_suffix(".crate").unwrap_or(name);
                    if let Some((krate, version)) = split_name_version(name) {
                        listing
                            .versions
                            .entry(krate.to_owned())
                            .or_default()
                            .insert(version);
                    }
                }
            }
        }
        listing
    }

    /// The versions of `krate` in the cache, ascending.
    pub fn versions(&self, krate: &str) -> impl Iterator<Item = &Version> {
        self.versions.get(krate).into_iter().flatten()
    }

    /// The newest cached version of `krate` that is newer than `than`, ignoring pre-releases.
    pub fn newest_newer(&self, krate: &str, than: &Version) -> Option<&Version> {
        self.versions(krate)
            .filter(|v| v.pre.is_empty() && *v > than)
            .max()
    }
}

/// `$CARGO_HOME`, or `$HOME/.cargo`.
pub fn cargo_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return Some(PathBuf::from(home));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo"))
}

/// `serde-json-1.0.0` → (`serde-json`, 1.0.0); the first split whose rest parses wins.
fn split_name_version(entry: &str) -> Option<(&str, Version)> {
    for (i, _) in entry.match_indices('-') {
        let rest = &entry[i + 1..];
        if rest.starts_with(|c: char| c.is_ascii_digit())
            && let Ok(v) = Version::parse(rest)
        {
            return Some((&entry[..i], v));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names_with_dashes_and_digits() {
        assert_eq!(
            split_name_version("serde-json-1.0.2").map(|x| x.0),
            Some("serde-json")
        );
        assert_eq!(
            split_name_version("x2d-3d-0.1.0").map(|x| x.0),
            Some("x2d-3d")
        );
        assert_eq!(
            split_name_version("foo-1.0.0-alpha.1")
                .map(|x| x.1.to_string())
                .as_deref(),
            Some("1.0.0-alpha.1")
        );
        assert!(split_name_version("CACHEDIR.TAG").is_none());
    }

    #[test]
    fn lists_cache_and_src_of_any_registry_directory() {
        let home = tempfile::tempdir().unwrap();
        let cache = home.path().join("registry/cache/some-registry-abc123");
        let src = home.path().join("registry/src/other-registry-def456");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::create_dir_all(src.join("kv-store-0.5.0")).unwrap();
        std::fs::write(cache.join("kv-store-0.4.1.crate"), b"").unwrap();
        std::fs::write(cache.join("kv-store-0.6.0-rc.1.crate"), b"").unwrap();
        let listing = CacheListing::read(home.path());
        let v: Vec<String> = listing
            .versions("kv-store")
            .map(|v| v.to_string())
            .collect();
        assert_eq!(v, ["0.4.1", "0.5.0", "0.6.0-rc.1"]);
        let base = Version::parse("0.4.1").unwrap();
        assert_eq!(
            listing
                .newest_newer("kv-store", &base)
                .map(|v| v.to_string())
                .as_deref(),
            Some("0.5.0")
        );
        assert!(
            listing
                .newest_newer("kv-store", &Version::parse("0.5.0").unwrap())
                .is_none()
        );
        assert!(
            CacheListing::read(&home.path().join("missing"))
                .versions("kv-store")
                .next()
                .is_none()
        );
    }
}
