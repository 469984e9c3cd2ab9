//! Order-preserving ("memcomparable") key encoding.
//!
//! Records are stored under their encoded primary key and index entries under their encoded
//! index value, and fjall orders keys bytewise. Every encoding here therefore keeps *value order
//! equal to byte order*, so a range scan over keys is a range scan over values:
//!
//! - unsigned integers: big-endian, fixed width;
//! - signed integers: big-endian with the sign bit flipped (so `-1 < 0 < 1` bytewise too);
//! - `bool`: one byte; `char`: its scalar value as a `u32`;
//! - strings and byte strings: every `0x00` becomes `0x00 0xFF`, then a `0x00 0x01` terminator.
//!   The terminator sorts below every escaped byte, so a prefix sorts first, and because the
//!   encoding is self-delimiting, tuples are plain concatenations;
//! - `Option<T>`: `0x00` for `None`, `0x01` then `T`;
//! - tuples (up to 4): the concatenation of their parts.
//!
//! Decoding is total: bad bytes (from a corrupt disk) give a [`KeyError`], never a panic.

/// Bytes that are not a valid encoding of the expected key type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid encoded key: {0}")]
pub struct KeyError(pub(crate) &'static str);

/// A type that can be a primary key or an indexed field: it has an order-preserving encoding.
///
/// # Examples
/// ```
/// use celldb::Key;
/// let (mut a, mut b) = (Vec::new(), Vec::new());
/// (-5i64).encode_key(&mut a);
/// 3i64.encode_key(&mut b);
/// assert!(a < b);
/// let mut input = &a[..];
/// assert_eq!(i64::decode_key(&mut input).unwrap(), -5);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a celldb key or index",
    label = "no order-preserving encoding for this type",
    note = "keys and indexes may be integers, bool, char, String, Vec<u8>, Option or tuples of them"
)]
pub trait Key: Sized + Clone + Send + Sync + 'static {
    /// Appends the order-preserving encoding of `self` to `out`.
    fn encode_key(&self, out: &mut Vec<u8>);

    /// Decodes one value from the front of `input`, advancing it.
    ///
    /// # Errors
    /// When the bytes are not a valid encoding (truncated, bad escape, bad terminator).
    fn decode_key(input: &mut &[u8]) -> Result<Self, KeyError>;
}

/// Something a lookup accepts for a key of type `K`: `K` itself, `&K`, and for `String` keys
/// `&str` (for `Vec<u8>` keys `&[u8]`). Encodes exactly like `K`.
pub trait KeyArg<K> {
    /// Appends the encoding of the key `K` this argument stands for.
    fn encode_arg(&self, out: &mut Vec<u8>);
}

impl<K: Key> KeyArg<K> for K {
    fn encode_arg(&self, out: &mut Vec<u8>) {
        self.encode_key(out);
    }
}

impl<K: Key> KeyArg<K> for &K {
    fn encode_arg(&self, out: &mut Vec<u8>) {
        (*self).encode_key(out);
    }
}

impl KeyArg<String> for &str {
    fn encode_arg(&self, out: &mut Vec<u8>) {
        encode_bytes(self.as_bytes(), out);
    }
}

impl KeyArg<Vec<u8>> for &[u8] {
    fn encode_arg(&self, out: &mut Vec<u8>) {
        encode_bytes(self, out);
    }
}

/// Encodes a key argument into a fresh buffer.
pub fn encode<K, A: KeyArg<K> + ?Sized>(arg: &A) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    arg.encode_arg(&mut out);
    out
}

/// Decodes a whole key: trailing bytes are an error.
///
/// # Errors
/// When the bytes are not exactly one valid encoding of `K`.
pub fn decode<K: Key>(mut bytes: &[u8]) -> Result<K, KeyError> {
    let key = K::decode_key(&mut bytes)?;
    if bytes.is_empty() {
        Ok(key)
    } else {
        Err(KeyError("trailing bytes after the key"))
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8], KeyError> {
    if input.len() < n {
        return Err(KeyError("truncated key"));
    }
    let (head, tail) = input.split_at(n);
    *input = tail;
    Ok(head)
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode_key(input: &mut &[u8]) -> Result<Self, KeyError> {
                let bytes = take(input, size_of::<$t>())?;
                let mut buf = [0u8; size_of::<$t>()];
                buf.copy_from_slice(bytes);
                Ok(<$t>::from_be_bytes(buf))
            }
        }
    )*};
}
unsigned!(u8, u16, u32, u64, u128);

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        impl Key for $t {
            fn encode_key(&self, out: &mut Vec<u8>) {
                // Flipping the sign bit maps i::MIN..=i::MAX monotonically onto u::MIN..=u::MAX.
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
            fn decode_key(input: &mut &[u8]) -> Result<Self, KeyError> {
                let raw = <$u>::decode_key(input)?;
                Ok((raw ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}
signed!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

impl Key for bool {
    fn encode_key(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn decode_key(input: &mut &[u8]) -> Result<Self, KeyError> {
        match take(input, 1)? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(KeyError("a bool must be 0 or 1")),
        }
    }
}

impl Key for char {
    fn encode_key(&self, out: &mut Vec<u8>) {
        u32::from(*self).encode_key(out);
    }
    fn decode_key(input: &mut &[u8]) -> Result<Self, KeyError> {
        char::from_u32(u32::decode_key(input)?).ok_or(KeyError("not a unicode scalar value"))
    }
}

impl Key for () {
    fn encode_key(&self, _out: &mut Vec<u8>) {}
    fn decode_key(_input: &mut &[u8]) -> Result<Self, KeyError> {
        Ok(())
    }
}

/// Escapes `0x00` as `0x00 0xFF` and terminates with `0x00 0x01`.
fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() + 2);
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
}

fn decode_bytes(input: &mut &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let Some(&b) = input.get(i) else {
            return Err(KeyError("unterminated string key"));
        };
        if b == 0 {
            match input.get(i + 1) {
                Some(0xFF) => out.push(0),
                Some(0x01) => {
                    *input = input.get(i + 2..).unwrap_or_default();
                    return Ok(out);
                }
                _ => return Err(KeyError("bad escape in string key")),
            }
            i += 2;
        } else {
            out.push(b);
            i += 1;
        }
    }
}

impl Key for Vec<u8> {
    fn encode_key(&self, out: &mut Vec<u8>) {
        encode_bytes(self, out);
    }
    fn decode_key(input: &mut &[u8]) -> Result<Self, KeyError> {
        decode_bytes(input)
    }
}

impl Key for String {
    fn encode_key(&self, out: &mut Vec<u8>) {
        encode_bytes(self.as_bytes(), out);
    }
    fn decode_key(input: &mut &[u8]) -> Result<Self, KeyError> {
        String::from_utf8(decode_bytes(input)?).map_err(|_| KeyError("string key is not UTF-8"))
    }
}

impl<T: Key> Key for Option<T> {
    fn encode_key(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.encode_key(out);
            }
        }
    }
    fn decode_key(input: &mut &[u8]) -> Result<Self, KeyError> {
        match take(input, 1)? {
            [0] => Ok(None),
            [1] => Ok(Some(T::decode_key(input)?)),
            _ => Err(KeyError("bad Option tag")),
        }
    }
}

macro_rules! tuple {
    ($($p:ident),+) => {
        impl<$($p: Key),+> Key for ($($p,)+) {
            #[allow(non_snake_case, reason = "names mirror the type parameters")]
            fn encode_key(&self, out: &mut Vec<u8>) {
                let ($($p,)+) = self;
                $($p.encode_key(out);)+
            }
            fn decode_key(input: &mut &[u8]) -> Result<Self, KeyError> {
                Ok(($($p::decode_key(input)?,)+))
            }
        }
    };
}
tuple!(A);
tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc<K: Key>(k: &K) -> Vec<u8> {
        let mut out = Vec::new();
        k.encode_key(&mut out);
        out
    }

    fn check_order<K: Key + Ord + std::fmt::Debug + PartialEq>(a: K, b: K) {
        let (ea, eb) = (enc(&a), enc(&b));
        assert_eq!(a.cmp(&b), ea.cmp(&eb), "{a:?} vs {b:?}");
        assert_eq!(decode::<K>(&ea).unwrap(), a);
    }

    proptest! {
        #[test]
        fn i64_order(a: i64, b: i64) { check_order(a, b); }
        #[test]
        fn i8_order(a: i8, b: i8) { check_order(a, b); }
        #[test]
        fn i128_order(a: i128, b: i128) { check_order(a, b); }
        #[test]
        fn u32_order(a: u32, b: u32) { check_order(a, b); }
        #[test]
        fn string_order(a: String, b: String) { check_order(a, b); }
        #[test]
        fn bytes_order(a: Vec<u8>, b: Vec<u8>) { check_order(a, b); }
        #[test]
        fn bytes_with_zeros_order(
            a in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xFFu8)], 0..6),
            b in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xFFu8)], 0..6),
        ) { check_order(a, b); }
        #[test]
        fn tuple_order(a: (String, i32), b: (String, i32)) { check_order(a, b); }
        #[test]
        fn tuple_of_bytes_order(a: (Vec<u8>, Vec<u8>, u8), b: (Vec<u8>, Vec<u8>, u8)) {
            check_order(a, b);
        }
        #[test]
        fn option_order(a: Option<i16>, b: Option<i16>) { check_order(a, b); }
        #[test]
        fn decoding_garbage_never_panics(bytes: Vec<u8>) {
            let _ = decode::<(String, i64, Option<Vec<u8>>)>(&bytes);
            let _ = decode::<char>(&bytes);
        }
    }

    #[test]
    fn arguments_encode_like_the_key() {
        assert_eq!(encode::<String, _>(&"a\0b"), enc(&"a\0b".to_string()));
        assert_eq!(encode::<u64, _>(&7u64), enc(&7u64));
        assert_eq!(encode::<Vec<u8>, _>(&&b"x"[..]), enc(&b"x".to_vec()));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = enc(&1u16);
        bytes.push(9);
        assert!(decode::<u16>(&bytes).is_err());
    }
}
