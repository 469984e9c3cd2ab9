//! Matching a version qualifier (`"0.4"`) against a version requirement as written in a
//! manifest (`"0.4"`, `"^0.4.2"`, `"=0.4.1"`, `">=0.3, <0.5"`), without a semver dependency.
//!
//! Rule: take the base version of the requirement's first comparator; the qualifier matches
//! when their components agree on every position both spell out. So `0.4` matches `^0.4.2`
//! and `=0.4.1`; `0.4.2` matches `0.4`; `0.4` does not match `0.3.9`.

/// Parses `MAJOR[.MINOR[.PATCH]]`.
pub(crate) fn parse_qualifier(q: &str) -> Option<Vec<u64>> {
    let parts: Vec<u64> = q
        .split('.')
        .map(|p| p.parse::<u64>().ok())
        .collect::<Option<_>>()?;
    (1..=3).contains(&parts.len()).then_some(parts)
}

/// The numeric components of the first comparator of a requirement (`[]` for `*`).
pub(crate) fn base(req: &str) -> Vec<u64> {
    let first = req.split(',').next().unwrap_or_default().trim();
    let digits = first.trim_start_matches(['^', '~', '=', '>', '<', ' ']);
    let mut out = Vec::new();
    for part in digits.split('.') {
        // `1.2.3-beta` and `1.2.*` stop at the first non-number.
        let number: String = part.chars().take_while(char::is_ascii_digit).collect();
        match number.parse::<u64>() {
            Ok(n) => out.push(n),
            Err(_) => break,
        }
        if number.len() != part.len() {
            break;
        }
    }
    out
}

/// Whether qualifier `q` selects requirement `req` (see the module docs).
pub(crate) fn matches(req: &str, q: &str) -> bool {
    let Some(q) = parse_qualifier(q) else {
        return false;
    };
    base(req).iter().zip(&q).all(|(a, b)| a == b)
}

/// The shortest qualifier that names `req` (`"0.4"` for `"^0.4.2"`, `"1"` for `"1.2"`),
/// following semver compatibility: the first non-zero component and everything before it.
pub(crate) fn short(req: &str) -> Option<String> {
    let base = base(req);
    if base.is_empty() {
        return None;
    }
    let keep = base
        .iter()
        .position(|&n| n != 0)
        .map_or(base.len(), |i| i + 1);
    Some(
        base[..keep]
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifiers_match_written_requirements() {
        assert!(matches("0.4", "0.4"));
        assert!(matches("^0.4.2", "0.4"));
        assert!(matches("=0.4.1", "0.4"));
        assert!(matches("0.4", "0.4.7"));
        assert!(matches(">=0.3, <0.5", "0.3"));
        assert!(matches("*", "2"));
        assert!(!matches("0.3.9", "0.4"));
        assert!(!matches("1.0", "0"));
        assert!(!matches("0.4", "latest"));
    }

    #[test]
    fn short_names_follow_semver_compatibility() {
        assert_eq!(short("0.4.2").as_deref(), Some("0.4"));
        assert_eq!(short("^1.2").as_deref(), Some("1"));
        assert_eq!(short("0.0.3").as_deref(), Some("0.0.3"));
        assert_eq!(short("*"), None);
    }
}
