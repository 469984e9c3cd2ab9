//! Encoding and *validated* decoding of proteins (rkyv 0.8 archives).
//!
//! Every byte that crosses a process or disk boundary goes through [`access`] or [`from_bytes`],
//! which run bytecheck validation first. There is deliberately no unchecked variant here:
//! `access_unchecked` on untrusted bytes is undefined behaviour.
//!
//! rkyv archives need 16-byte alignment and their root sits at the *end* of the buffer, so a
//! slice handed to [`access`] must end exactly where the archive ends. [`from_bytes`] copies a
//! misaligned slice into an aligned buffer first; [`access`] reports misalignment as an error.

use rkyv::{
    Archive, Deserialize, Serialize,
    api::high::{HighSerializer, HighValidator},
    bytecheck::CheckBytes,
    de::Pool,
    rancor::{self, Strategy},
    ser::allocator::ArenaHandle,
    util::AlignedVec,
};

/// A type that can cross a process or disk boundary: rkyv-archivable, validatable, and
/// fingerprinted. `#[protein]` makes a struct or enum one; it is implemented automatically for
/// every type that satisfies the bounds.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a protein",
    label = "cannot cross a process or disk boundary",
    note = "add `#[protein]` to the definition of `{Self}`"
)]
pub trait Protein:
    crate::Fingerprint
    + Archive<
        Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                      + Deserialize<Self, Strategy<Pool, rancor::Error>>,
    > + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
    + for<'a, 'b> Serialize<HighSerializer<&'b mut AlignedVec, ArenaHandle<'a>, rancor::Error>>
    + Sized
{
}

impl<T> Protein for T where
    T: crate::Fingerprint
        + Archive<
            Archived: for<'a> CheckBytes<HighValidator<'a, rancor::Error>>
                          + Deserialize<T, Strategy<Pool, rancor::Error>>,
        > + for<'a> Serialize<HighSerializer<AlignedVec, ArenaHandle<'a>, rancor::Error>>
        + for<'a, 'b> Serialize<HighSerializer<&'b mut AlignedVec, ArenaHandle<'a>, rancor::Error>>
{
}

/// The archived form of a protein, as read in place from validated bytes.
pub type Archived<T> = <T as Archive>::Archived;

/// An aligned byte buffer holding an archive.
pub type Bytes = AlignedVec<16>;

/// Bytes that are not a valid archive of the expected type.
#[derive(Debug, thiserror::Error)]
#[error("invalid {type_name} archive ({len} bytes): {reason}")]
pub struct DecodeError {
    /// The type we tried to decode.
    pub type_name: String,
    /// Length of the rejected input.
    pub len: usize,
    /// What the validator said.
    pub reason: String,
}

/// A value rkyv could not serialize (for example a map too large for 32-bit offsets).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {type_name}: {reason}")]
pub struct EncodeError {
    /// The type we tried to encode.
    pub type_name: String,
    /// What the serializer said.
    pub reason: String,
}

/// Serializes `value` into a fresh aligned buffer.
///
/// # Errors
/// When rkyv cannot represent the value (sizes beyond its offset range).
pub fn to_bytes<T: Protein>(value: &T) -> Result<Bytes, EncodeError> {
    encode_into(value, Bytes::new())
}

/// Serializes `value` into `buffer` (cleared first), reusing its allocation: on small messages
/// allocation dominates, so hot paths keep one buffer per connection.
///
/// # Errors
/// As [`to_bytes`].
pub fn encode_into<T: Protein>(value: &T, mut buffer: Bytes) -> Result<Bytes, EncodeError> {
    buffer.clear();
    rkyv::api::high::to_bytes_in::<_, rancor::Error>(value, buffer).map_err(|e| EncodeError {
        type_name: T::type_name(),
        reason: e.to_string(),
    })
}

/// Appends the archive of `value` to `buffer` at its current end, which must be 16-byte
/// aligned (frames keep it so). The archive then occupies `buffer[start..]`, ending exactly at
/// the data, as [`access`] requires. On error the buffer is restored to its previous length.
///
/// # Errors
/// As [`to_bytes`]; also when the current end of `buffer` is not 16-byte aligned.
pub fn append<T: Protein>(value: &T, buffer: &mut Bytes) -> Result<(), EncodeError> {
    let start = buffer.len();
    if !start.is_multiple_of(16) {
        return Err(EncodeError {
            type_name: T::type_name(),
            reason: format!("archive would start at unaligned offset {start}"),
        });
    }
    match rkyv::api::high::to_bytes_in::<&mut Bytes, rancor::Error>(value, &mut *buffer) {
        Ok(_) => Ok(()),
        Err(e) => {
            buffer.resize(start, 0);
            Err(EncodeError {
                type_name: T::type_name(),
                reason: e.to_string(),
            })
        }
    }
}

/// Validates `bytes` and returns the archived value in place (zero-copy).
///
/// # Errors
/// When the bytes are not a valid archive of `T`, or the slice is not 16-byte aligned.
pub fn access<T: Protein>(bytes: &[u8]) -> Result<&Archived<T>, DecodeError> {
    rkyv::access::<Archived<T>, rancor::Error>(bytes).map_err(|e| decode_error::<T>(bytes, e))
}

/// Validates and deserializes `bytes` into an owned value. Misaligned input is copied into an
/// aligned buffer first.
///
/// # Errors
/// When the bytes are not a valid archive of `T`.
pub fn from_bytes<T: Protein>(bytes: &[u8]) -> Result<T, DecodeError> {
    if (bytes.as_ptr() as usize).is_multiple_of(16) {
        let archived = access::<T>(bytes)?;
        deserialize::<T>(archived).map_err(|e| decode_error::<T>(bytes, e))
    } else {
        let mut aligned = Bytes::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        let archived = access::<T>(&aligned)?;
        deserialize::<T>(archived).map_err(|e| decode_error::<T>(bytes, e))
    }
}

/// Checks that `payload` is *exactly* the archive of `value` (encoding `value` again gives the
/// same bytes). rkyv's validation checks the root and everything it points to, but accepts
/// bytes before them; a strict service (`#[service(strict)]`) refuses such payloads too.
///
/// ```
/// use cell_runtime::codec;
/// let exact = codec::to_bytes(&7u64).unwrap();
/// assert!(codec::check_exact(&7u64, &exact).is_ok());
/// let mut padded = codec::Bytes::new();
/// padded.extend_from_slice(&[0u8; 16]);
/// padded.extend_from_slice(&exact);
/// assert_eq!(codec::from_bytes::<u64>(&padded).unwrap(), 7); // valid...
/// assert!(codec::check_exact(&7u64, &padded).is_err());      // ...but not exact
/// ```
///
/// # Errors
/// When the bytes differ (or `value` cannot be encoded).
pub fn check_exact<T: Protein>(value: &T, payload: &[u8]) -> Result<(), DecodeError> {
    let mismatch = |reason: String| DecodeError {
        type_name: T::type_name(),
        len: payload.len(),
        reason,
    };
    let canonical = to_bytes(value).map_err(|e| mismatch(e.to_string()))?;
    if canonical[..] == *payload {
        Ok(())
    } else {
        Err(mismatch(format!(
            "not exactly the archive of its value ({} bytes, the archive has {})",
            payload.len(),
            canonical.len()
        )))
    }
}

/// What generated decoders call: [`from_bytes`], and with `strict` also [`check_exact`] (one
/// function, so a type that is not a protein is reported once).
///
/// # Errors
/// As [`from_bytes`] and [`check_exact`].
pub fn decode_args<T: Protein>(payload: &[u8], strict: bool) -> Result<T, DecodeError> {
    let value = from_bytes::<T>(payload)?;
    if strict {
        check_exact(&value, payload)?;
    }
    Ok(value)
}

/// What generated decoders call for borrowed arguments: [`access`], and with `strict` also
/// [`check_exact`] (which deserializes a copy to encode it again).
///
/// # Errors
/// As [`access`] and [`check_exact`].
pub fn access_args<T: Protein>(payload: &[u8], strict: bool) -> Result<&Archived<T>, DecodeError> {
    let archived = access::<T>(payload)?;
    if strict {
        let value = deserialize::<T>(archived).map_err(|e| decode_error::<T>(payload, e))?;
        check_exact(&value, payload)?;
    }
    Ok(archived)
}

/// Deserializes an already validated archive into an owned value.
///
/// # Errors
/// Only when deserialization itself fails (e.g. shared pointers that cannot be pooled).
pub fn deserialize<T: Protein>(archived: &Archived<T>) -> Result<T, rancor::Error> {
    rkyv::deserialize::<T, rancor::Error>(archived)
}

fn decode_error<T: Protein>(bytes: &[u8], e: impl std::fmt::Display) -> DecodeError {
    DecodeError {
        type_name: T::type_name(),
        len: bytes.len(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_standard_types() {
        let value = (7u64, "seven".to_string(), vec![Some(1u8), None]);
        let bytes = to_bytes(&value).unwrap();
        let back: (u64, String, Vec<Option<u8>>) = from_bytes(&bytes).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let bytes = to_bytes(&"hello".to_string()).unwrap();
        for cut in 0..bytes.len() {
            // Truncations either fail validation or (rarely) decode another valid string; they
            // must never panic.
            let _ = from_bytes::<String>(&bytes[..cut]);
        }
        let mut evil = Bytes::new();
        evil.extend_from_slice(&[0xff; 8]);
        // A relative pointer far outside the buffer, and a char that is not a scalar value.
        assert!(from_bytes::<Vec<u64>>(&evil).is_err());
        assert!(from_bytes::<char>(&evil[..4]).is_err());
    }

    #[test]
    fn appended_archives_decode_in_place() {
        let mut buffer = Bytes::new();
        buffer.extend_from_slice(&[0u8; 16]);
        append(&vec!["a".to_string(), "b".to_string()], &mut buffer).unwrap();
        let back: Vec<String> = from_bytes(&buffer[16..]).unwrap();
        assert_eq!(back, ["a", "b"]);
        buffer.push(0);
        assert!(append(&1u8, &mut buffer).is_err());
    }

    #[test]
    fn misaligned_input_is_copied_not_rejected() {
        let bytes = to_bytes(&123_456u64).unwrap();
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        assert_eq!(from_bytes::<u64>(&shifted[1..]).unwrap(), 123_456);
    }
}
