//! Compile-time structural fingerprints.
//!
//! A fingerprint is a 64-bit FNV-1a hash of a type's *structure*: for a struct its field names
//! and field types, for an enum its variant names and their fields, recursively through nested
//! types. The type's own name is deliberately left out, so renaming a Rust type does not break
//! stored data, while renaming, retyping, reordering or adding a field does change it (all of
//! these change the rkyv layout).
//!
//! `#[protein]` implements [`Fingerprint`] for user types; this module implements it for the
//! standard types a protein may contain. The hash is computed in `const` context, so comparing
//! fingerprints at a handshake or when opening a table costs one integer comparison.
//!
//! Recursive types (a type that contains itself through `Box` or `Vec`) are not supported: the
//! constant would refer to itself and rustc reports a cycle error.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A type whose structure has a stable, compile-time fingerprint.
///
/// Implemented by `#[protein]` for user types and here for standard types.
///
/// # Examples
/// ```
/// use cell_runtime::Fingerprint;
/// assert_eq!(<Option<u8> as Fingerprint>::FINGERPRINT, <Option<u8> as Fingerprint>::FINGERPRINT);
/// assert_ne!(<Option<u8> as Fingerprint>::FINGERPRINT, <Option<i8> as Fingerprint>::FINGERPRINT);
/// assert_eq!(<Vec<String> as Fingerprint>::type_name(), "Vec<String>");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a protein",
    label = "cannot cross a process or disk boundary",
    note = "add `#[protein]` to the definition of `{Self}`"
)]
pub trait Fingerprint {
    /// The structural hash.
    const FINGERPRINT: u64;

    /// The type as a user would write it (`Vec<String>`), for messages.
    fn type_name() -> String;

    /// A one-line description of the structure, used to say *what* changed when two
    /// fingerprints differ, e.g. `struct { id: u64, email: String }`. Nested user types appear
    /// by name; a change inside them shows as a different fingerprint with the same description.
    fn describe() -> String {
        Self::type_name()
    }
}

/// The FNV-1a 64-bit offset basis: the starting state of every fingerprint.
pub const SEED: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// Mixes raw bytes into a fingerprint state.
pub const fn mix_bytes(mut state: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        state ^= bytes[i] as u64;
        state = state.wrapping_mul(PRIME);
        i += 1;
    }
    state
}

/// Mixes a string, length first, so `("ab", "c")` and `("a", "bc")` differ.
pub const fn mix_str(state: u64, s: &str) -> u64 {
    let state = mix_u64(state, s.len() as u64);
    mix_bytes(state, s.as_bytes())
}

/// Mixes a 64-bit value (typically a nested type's fingerprint).
pub const fn mix_u64(state: u64, value: u64) -> u64 {
    mix_bytes(state, &value.to_le_bytes())
}

/// Describes one field as `name: Type`, for [`Fingerprint::describe`] implementations.
pub fn describe_field<T: Fingerprint>(name: &str) -> String {
    format!("{name}: {}", T::type_name())
}

/// Formats a fingerprint the way messages show it.
pub fn hex(fingerprint: u64) -> String {
    format!("{fingerprint:016x}")
}

macro_rules! leaf {
    ($($ty:ty => $name:literal),* $(,)?) => {$(
        impl Fingerprint for $ty {
            const FINGERPRINT: u64 = mix_str(SEED, $name);
            fn type_name() -> String {
                $name.to_string()
            }
        }
    )*};
}

leaf! {
    () => "()", bool => "bool", char => "char",
    u8 => "u8", u16 => "u16", u32 => "u32", u64 => "u64", u128 => "u128",
    i8 => "i8", i16 => "i16", i32 => "i32", i64 => "i64", i128 => "i128",
    f32 => "f32", f64 => "f64", String => "String",
}

macro_rules! wrapper {
    ($($outer:ident<$($p:ident),+> => $tag:literal),* $(,)?) => {$(
        impl<$($p: Fingerprint),+> Fingerprint for $outer<$($p),+> {
            const FINGERPRINT: u64 = {
                let state = mix_str(SEED, $tag);
                $(let state = mix_u64(state, <$p as Fingerprint>::FINGERPRINT);)+
                state
            };
            fn type_name() -> String {
                let params: Vec<String> = vec![$(<$p as Fingerprint>::type_name()),+];
                format!("{}<{}>", $tag, params.join(", "))
            }
        }
    )*};
}

wrapper! {
    Vec<T> => "Vec",
    Option<T> => "Option",
    Box<T> => "Box",
    BTreeMap<K, V> => "BTreeMap",
    HashMap<K, V> => "HashMap",
    BTreeSet<T> => "BTreeSet",
    HashSet<T> => "HashSet",
}

impl<T: Fingerprint, E: Fingerprint> Fingerprint for Result<T, E> {
    const FINGERPRINT: u64 = mix_u64(
        mix_u64(mix_str(SEED, "Result"), T::FINGERPRINT),
        E::FINGERPRINT,
    );
    fn type_name() -> String {
        format!("Result<{}, {}>", T::type_name(), E::type_name())
    }
}

impl<T: Fingerprint, const N: usize> Fingerprint for [T; N] {
    const FINGERPRINT: u64 = mix_u64(mix_u64(mix_str(SEED, "array"), T::FINGERPRINT), N as u64);
    fn type_name() -> String {
        format!("[{}; {N}]", T::type_name())
    }
}

macro_rules! tuple {
    ($($p:ident),+) => {
        impl<$($p: Fingerprint),+> Fingerprint for ($($p,)+) {
            const FINGERPRINT: u64 = {
                let state = mix_str(SEED, "tuple");
                $(let state = mix_u64(state, <$p as Fingerprint>::FINGERPRINT);)+
                state
            };
            fn type_name() -> String {
                let parts: Vec<String> = vec![$(<$p as Fingerprint>::type_name()),+];
                format!("({},)", parts.join(", "))
            }
        }
    };
}

tuple!(A);
tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D);
tuple!(A, B, C, D, E);
tuple!(A, B, C, D, E, F);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_length_prefixed() {
        let ab_c = mix_str(mix_str(SEED, "ab"), "c");
        let a_bc = mix_str(mix_str(SEED, "a"), "bc");
        assert_ne!(ab_c, a_bc);
    }

    #[test]
    fn containers_depend_on_their_parameters() {
        assert_ne!(<Vec<u8>>::FINGERPRINT, <Vec<u16>>::FINGERPRINT);
        assert_ne!(<Vec<u8>>::FINGERPRINT, <Option<u8>>::FINGERPRINT);
        assert_ne!(
            <BTreeMap<u8, u16>>::FINGERPRINT,
            <BTreeMap<u16, u8>>::FINGERPRINT
        );
        assert_ne!(<[u8; 3]>::FINGERPRINT, <[u8; 4]>::FINGERPRINT);
        assert_ne!(<(u8, u16)>::FINGERPRINT, <(u16, u8)>::FINGERPRINT);
    }

    #[test]
    fn type_names_read_like_rust() {
        assert_eq!(
            <HashMap<String, Vec<u8>>>::type_name(),
            "HashMap<String, Vec<u8>>"
        );
        assert_eq!(<(u8,)>::type_name(), "(u8,)");
        assert_eq!(<[u8; 4]>::type_name(), "[u8; 4]");
    }
}
