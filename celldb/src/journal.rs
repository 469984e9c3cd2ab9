//! A check of fjall's journal files before fjall recovers them, so damaged bytes in the middle
//! of a journal are an error instead of a silent loss of acknowledged writes.
//!
//! fjall 3 recovers its journal in "tolerate a corrupt tail" mode, and it cannot tell a tail
//! from the middle: at the first entry it cannot decode (a bad marker tag, a bad trailer, a
//! length running past the end, a value that does not decompress) it **truncates the file
//! there** and recovers the batches before it without an error. That is right for a torn
//! write at the end (a batch that was never acknowledged), and silently drops every later,
//! acknowledged batch when the damage is in the middle. Damage *inside* a batch's keys or
//! values is caught by fjall itself (each batch carries an xxh3 checksum of its items:
//! [`fjall::Error::JournalRecovery`]), but the batch's start marker — its item count and its
//! sequence number — is not covered by that checksum.
//!
//! So before fjall opens the database, [`check`] walks every `*.jnl` file with the framing of
//! fjall 3.1's journal (start, item, end and clear markers; the end marker carries a checksum
//! and the trailer `FJL\x03`):
//!
//! - where the walk first fails, it looks for a complete end marker (the trailer) from the
//!   start of that batch on, up to the first page (4 KiB) of zeros. If there is one, complete
//!   batches follow the damage: [`Error::Corrupt`], and the file is left untouched. If there is
//!   none, it is a torn tail — fjall drops it, and it holds no acknowledged write (a group is
//!   acknowledged only after its whole batch is written and fsynced). A page of zeros (never
//!   written: fjall preallocates with zeros) ends the search because unsynced writes can reach
//!   the disk out of order after a power loss — batches after such a page were never fsynced
//!   (an fsync would have written the page too), so they were never acknowledged. An end
//!   marker whose trailer bytes are there but wrong (neither the trailer nor zeros) counts as
//!   damage, not as a torn tail;
//! - each complete batch's sequence number must exceed the previous one's (fjall hands them
//!   out under its journal lock, so they increase in file order): one that goes backwards was
//!   damaged, and replaying it would let an older value shadow a newer one.
//!
//! The framing mirrored here is fjall 3.1's on-disk journal format (`Cargo.lock` pins fjall).
//! The unit tests below walk journals written by the real fjall, so a fjall upgrade that
//! changes the format fails them rather than users' opens. What is not covered: damage that
//! turns the very last batch's trailer into zeros, or a whole page of fsynced data into zeros (a
//! disk that lost a write it acknowledged), looks exactly like an unwritten tail and is dropped
//! as one.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

/// The end marker's trailer (fjall's `MAGIC_BYTES`).
const TRAILER: [u8; 4] = *b"FJL\x03";

/// A journal whose last batch was cut short (a torn write): fjall drops it by cutting the file
/// at `at`, the end of its last complete batch.
#[derive(Debug)]
pub(crate) struct TornTail {
    /// The journal's file name.
    pub(crate) file: std::ffi::OsString,
    /// Where its complete batches end.
    pub(crate) at: u64,
}

/// Checks every journal file in fjall's directory `dir` (a missing directory is a new
/// database: nothing to check); returns the journals that end in a partly written batch.
///
/// # Errors
/// [`Error::Corrupt`] when a journal is damaged before its last complete batch; I/O errors.
pub(crate) fn check(dir: &Path) -> Result<Vec<TornTail>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut torn = Vec::new();
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        if path.extension().is_some_and(|e| e == "jnl") && path.is_file() {
            let file = File::open(&path).map_err(io(&path))?;
            let reason = match walk(BufReader::new(&file)).map_err(io(&path))? {
                Walk::Clean => None,
                Walk::Damaged(reason) => Some(reason),
                Walk::Broken {
                    at,
                    batch,
                    what,
                    zero_tag,
                } => {
                    let damage = trailer_follows(&file, batch).map_err(io(&path))?;
                    // A partly written batch (not the zeros after the last one): fjall would
                    // parse it, and its debug build asserts on an item header cut short.
                    if !damage && (at > batch || !zero_tag) {
                        torn.push(TornTail {
                            file: path.file_name().map(ToOwned::to_owned).unwrap_or_default(),
                            at: batch,
                        });
                    }
                    damage.then(|| broken(at, &what))
                }
            };
            if let Some(reason) = reason {
                return Err(corrupt(&path, &reason));
            }
        }
    }
    Ok(torn)
}

/// Drops the torn tails [`check`] found in `dir` (fjall's directory, or a private view of
/// it) by cutting each file at the end of its last complete batch — what fjall's recovery
/// does, done before fjall parses the partial batch.
pub(crate) fn cut_torn_tails(dir: &Path, torn: &[TornTail]) -> Result<()> {
    for tail in torn {
        let path = dir.join(&tail.file);
        let file = File::options().write(true).open(&path).map_err(io(&path))?;
        file.set_len(tail.at)
            .and_then(|()| file.sync_all())
            .map_err(io(&path))?;
        tracing::info!(
            journal = %path.display(),
            at = tail.at,
            "celldb: dropped a partly written (never acknowledged) batch at the journal's end"
        );
    }
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}

fn corrupt(path: &Path, reason: &str) -> Error {
    Error::Corrupt {
        table: format!("journal {}", path.display()),
        reason: format!(
            "{reason}; fjall would drop the acknowledged batches after it without an error, so \
             the database is not opened (the file is left as it was: restore it from a backup, \
             or move it away to accept losing those writes)"
        ),
    }
}

/// What walking a journal found.
enum Walk {
    /// Every entry decodes (up to the end, or up to an unwritten tail).
    Clean,
    /// Damage that is an error wherever it is.
    Damaged(String),
    /// The first entry that does not decode starts at byte `at`; the batch it belongs to (what
    /// fjall would truncate to) at `batch`. Damage if complete batches follow, else a torn
    /// tail. `zero_tag`: the entry at `at` starts with a zero byte (where fjall stops).
    Broken {
        at: u64,
        batch: u64,
        what: String,
        zero_tag: bool,
    },
}

fn broken(at: u64, what: &str) -> String {
    format!("unreadable entry at byte {at} ({what}), followed by complete batches")
}

/// How reading one entry went.
enum Entry {
    Start {
        seqno: u64,
    },
    Item,
    End,
    Clear,
    /// A complete end marker whose trailer bytes were damaged.
    DamagedEnd,
    /// The file ends cleanly here.
    Eof,
}

/// Why an entry cannot be decoded (mirrors the cases fjall's reader truncates at), and whether
/// its tag byte was zero.
struct Broken(String, bool);

/// Counts bytes read, for offsets in messages.
struct Counting<R> {
    inner: R,
    at: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Walks one journal's entries.
fn walk(reader: impl Read) -> std::io::Result<Walk> {
    let mut reader = Counting {
        inner: reader,
        at: 0,
    };
    let mut last_seqno: Option<u64> = None;
    let mut batch: Option<u64> = None;
    // Where the current batch starts: the end of the last complete one.
    let mut batch_start = 0;
    loop {
        let offset = reader.at;
        let entry = match read_entry(&mut reader)? {
            Ok(entry) => entry,
            Err(Broken(what, zero_tag)) => {
                return Ok(Walk::Broken {
                    at: offset,
                    batch: batch_start,
                    what,
                    zero_tag,
                });
            }
        };
        match entry {
            Entry::Eof => return Ok(Walk::Clean),
            Entry::Start { seqno } => batch = Some(seqno),
            Entry::End => {
                if let Some(seqno) = batch.take() {
                    if let Some(last) = last_seqno.filter(|&last| seqno <= last) {
                        return Ok(Walk::Damaged(format!(
                            "the batch ending at byte {} has sequence number {seqno}, not above \
                             the previous batch's {last}",
                            reader.at
                        )));
                    }
                    last_seqno = Some(seqno);
                }
                batch_start = reader.at;
            }
            Entry::DamagedEnd => {
                return Ok(Walk::Damaged(format!(
                    "the batch ending at byte {} has a damaged trailer",
                    reader.at
                )));
            }
            Entry::Item | Entry::Clear => {}
        }
    }
}

/// Reads exactly `N` bytes; `None` at the end of the file.
fn array<const N: usize>(reader: &mut impl Read) -> std::io::Result<Option<[u8; N]>> {
    let mut buf = [0u8; N];
    match reader.read_exact(&mut buf) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads one entry with fjall 3.1's framing. The outer `Err` is an I/O error; the inner one an
/// entry fjall's reader could not decode either.
fn read_entry<R: Read>(reader: &mut Counting<R>) -> std::io::Result<Result<Entry, Broken>> {
    let truncated = |what: &str| Ok(Err(Broken(format!("{what} cut short"), false)));
    let Some([tag]) = array::<1>(reader)? else {
        return Ok(Ok(Entry::Eof));
    };
    match tag {
        1 => {
            let Some(header) = array::<12>(reader)? else {
                return truncated("batch start");
            };
            let mut seqno = [0u8; 8];
            seqno.copy_from_slice(&header[4..]);
            Ok(Ok(Entry::Start {
                seqno: u64::from_le_bytes(seqno),
            }))
        }
        2 => {
            let Some(header) = array::<20>(reader)? else {
                return truncated("item header");
            };
            let [value_type, compression, ..] = header;
            if !matches!(value_type, 0 | 1 | 2 | 4) {
                return Ok(Err(Broken(format!("bad value type {value_type}"), false)));
            }
            let key_len = u64::from(u16::from_le_bytes([header[10], header[11]]));
            let value_len = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
            let disk_len = u32::from_le_bytes([header[16], header[17], header[18], header[19]]);
            let skipped = std::io::copy(&mut reader.by_ref().take(key_len), &mut std::io::sink())?;
            if skipped < key_len {
                return truncated("item key");
            }
            match compression {
                // fjall reads `disk_len` bytes and asserts (in debug builds: a panic) that the
                // two lengths agree; a written header whose lengths disagree is damage.
                0 if value_len != disk_len => {
                    return Ok(Err(Broken(
                        format!(
                            "an uncompressed value with two lengths, {value_len} and {disk_len}"
                        ),
                        false,
                    )));
                }
                0 => {
                    let skipped = std::io::copy(
                        &mut reader.by_ref().take(u64::from(disk_len)),
                        &mut std::io::sink(),
                    )?;
                    if skipped < u64::from(disk_len) {
                        return truncated("item value");
                    }
                }
                1 => {
                    // fjall decompresses at recovery and truncates where that fails.
                    let mut compressed = Vec::new();
                    reader
                        .by_ref()
                        .take(u64::from(disk_len))
                        .read_to_end(&mut compressed)?;
                    if compressed.len() < disk_len as usize {
                        return truncated("item value");
                    }
                    // LZ4 expands at most 255-fold: a larger claimed size is damage (and is
                    // never allocated).
                    if u64::from(value_len) > 255 * u64::from(disk_len) + 16 {
                        return Ok(Err(Broken("bad compressed value size".into(), false)));
                    }
                    let mut value = vec![0u8; value_len as usize];
                    match lz4_flex::decompress_into(&compressed, &mut value) {
                        Ok(n) if n == value.len() => {}
                        _ => return Ok(Err(Broken("value does not decompress".into(), false))),
                    }
                }
                other => return Ok(Err(Broken(format!("bad compression tag {other}"), false))),
            }
            Ok(Ok(Entry::Item))
        }
        3 => {
            let Some(rest) = array::<12>(reader)? else {
                return truncated("batch end");
            };
            if rest[8..] == TRAILER {
                return Ok(Ok(Entry::End));
            }
            // A torn write leaves zeros (or a start of the trailer, then zeros); any other
            // bytes are a written trailer that was damaged: the batch was complete.
            let torn = rest[8..]
                .iter()
                .zip(TRAILER)
                .all(|(&b, t)| b == t || b == 0);
            if torn {
                Ok(Err(Broken("batch trailer cut short".into(), false)))
            } else {
                Ok(Ok(Entry::DamagedEnd))
            }
        }
        4 => match array::<8>(reader)? {
            Some(_) => Ok(Ok(Entry::Clear)),
            None => truncated("clear marker"),
        },
        other => Ok(Err(Broken(format!("bad marker tag {other}"), other == 0))),
    }
}

/// The file system's page size, the unit of torn and reordered writes (4 KiB on ext4).
const PAGE: u64 = 4096;

/// Positioned reads of a journal: the file, or bytes in the unit tests.
trait Source {
    /// Reads up to `buf.len()` bytes at `at`; 0 at the end.
    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize>;
    /// The next byte at or after `at` that may not be zero (`None`: only a hole follows).
    fn next_data(&self, at: u64) -> std::io::Result<Option<u64>>;
}

impl Source for File {
    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, at)
    }

    fn next_data(&self, at: u64) -> std::io::Result<Option<u64>> {
        next_data(self, at)
    }
}

#[cfg(test)]
impl Source for &[u8] {
    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
        let rest = usize::try_from(at)
            .ok()
            .and_then(|at| self.get(at..))
            .unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn next_data(&self, at: u64) -> std::io::Result<Option<u64>> {
        Ok(Some(at))
    }
}

/// True when a complete end marker (its trailer) follows byte `from` — the start of the batch
/// the walk broke in, which is what fjall would truncate to — before the first page that was
/// never written.
///
/// A page of zeros (fjall preallocates its journal files with zeros; a hole of a sparse file
/// reads as zeros) ends the search: writes that were never fsynced can reach the disk out of
/// order after a power loss, so complete batches may follow such a page — but only
/// unacknowledged ones, since an fsync of a later batch would have written that page too. A
/// damaged byte is not a page of zeros, and the batches after it are found. (Searching from the
/// batch's start, not from the broken entry, also finds batches that a damaged length field
/// made the walk skip.)
fn trailer_follows(source: &impl Source, from: u64) -> std::io::Result<bool> {
    let mut window = [0u8; 4];
    let mut page = [0u8; PAGE as usize];
    let mut at = from;
    loop {
        match source.next_data(at)? {
            // A hole: never written.
            Some(data) if data > at => return Ok(false),
            Some(_) => {}
            None => return Ok(false),
        }
        // Up to the next page boundary, so every later read is one whole page.
        let want = usize::try_from(PAGE - at % PAGE).unwrap_or(page.len());
        let chunk = page.get_mut(..want).unwrap_or_default();
        let n = match source.read_at(chunk, at) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = chunk.get(..n).unwrap_or_default();
        if at.is_multiple_of(PAGE) && n == want && chunk.iter().all(|&b| b == 0) {
            return Ok(false);
        }
        if scan(&mut window, chunk) {
            return Ok(true);
        }
        at += n as u64;
    }
}

/// Looks for the trailer in `chunk`; `window` carries the last bytes across chunks.
fn scan(window: &mut [u8; 4], chunk: &[u8]) -> bool {
    // Fast path: most chunks hold no `F` at all.
    if !chunk.contains(&TRAILER[0]) && !window.contains(&TRAILER[0]) {
        let keep = chunk.len().min(4);
        window.rotate_left(keep);
        window[4 - keep..].copy_from_slice(&chunk[chunk.len() - keep..]);
        return false;
    }
    for &b in chunk {
        *window = [window[1], window[2], window[3], b];
        if *window == TRAILER {
            return true;
        }
    }
    false
}

/// The start of the next data region at or after `at` (`None`: only a hole follows).
#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "lseek(SEEK_DATA), which std does not wrap")]
fn next_data(file: &File, at: u64) -> std::io::Result<Option<u64>> {
    use std::os::fd::AsRawFd;
    let Ok(offset) = libc::off_t::try_from(at) else {
        return Ok(None);
    };
    // SAFETY: `lseek` on a valid, open descriptor; it only moves this descriptor's offset,
    // which nothing else here uses (reads are positioned).
    let found = unsafe { libc::lseek(file.as_raw_fd(), offset, libc::SEEK_DATA) };
    if found < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            // A file system without SEEK_DATA: read everything.
            Some(libc::EINVAL) => Ok(Some(at)),
            _ => Err(e),
        };
    }
    Ok(u64::try_from(found).ok())
}

/// Without `SEEK_DATA`: everything is data.
#[cfg(not(target_os = "linux"))]
fn next_data(_file: &File, at: u64) -> std::io::Result<Option<u64>> {
    Ok(Some(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A real fjall database with a few batches in its journal (not flushed: the process
    /// "crashes" by leaking nothing — fjall keeps unflushed data in the journal only).
    fn journal_with_batches(batches: u64) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = fjall::Database::builder(dir.path())
                .manual_journal_persist(true)
                .open()
                .unwrap();
            let ks = db
                .keyspace("k", fjall::KeyspaceCreateOptions::default)
                .unwrap();
            for i in 0..batches {
                let mut batch = db.batch();
                batch.insert(&ks, i.to_be_bytes(), vec![i as u8; 50]);
                batch.insert(&ks, (i + 1000).to_be_bytes(), vec![7u8; 5000]); // lz4
                batch.commit().unwrap();
            }
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        let mut journals: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
            .collect();
        journals.sort();
        let path = journals.pop().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        // fjall preallocates the file: the entries, then zeros.
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        bytes.truncate(end);
        (dir, path, bytes)
    }

    fn verdict(bytes: &[u8]) -> Option<String> {
        match walk(bytes).unwrap() {
            Walk::Clean => None,
            Walk::Damaged(reason) => Some(reason),
            Walk::Broken {
                at, batch, what, ..
            } => trailer_follows(&bytes, batch)
                .unwrap()
                .then(|| broken(at, &what)),
        }
    }

    #[test]
    fn journals_written_by_fjall_pass() {
        let (dir, _, bytes) = journal_with_batches(5);
        assert!(bytes.len() > 100, "expected a journal with data");
        assert_eq!(verdict(&bytes), None);
        check(dir.path()).unwrap();
    }

    #[test]
    fn a_torn_tail_passes() {
        let (_dir, _, bytes) = journal_with_batches(3);
        for cut in [bytes.len() - 1, bytes.len() - 13, bytes.len() - 30] {
            assert_eq!(verdict(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0u8; 4096]);
        assert_eq!(verdict(&zeros), None);
    }

    #[test]
    fn a_batch_cut_short_is_a_torn_tail_cut_at_the_last_complete_batch() {
        // The last batch cut inside an item header, zeros after it (fjall's debug build
        // asserts on that header's two lengths): reported, and cut where fjall would cut.
        let (dir, path, bytes) = journal_with_batches(3);
        let Walk::Broken { batch, .. } = walk(&bytes[..bytes.len() - 1]).unwrap() else {
            panic!("a cut journal walks to a broken entry");
        };
        let cut = usize::try_from(batch).unwrap() + 13 + 12;
        let mut file = bytes[..cut].to_vec();
        file.resize(bytes.len() + 4096, 0);
        std::fs::write(&path, &file).unwrap();
        let torn = check(dir.path()).unwrap();
        assert_eq!(torn.len(), 1, "{torn:?}");
        assert_eq!(torn[0].at, batch);
        cut_torn_tails(dir.path(), &torn).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), batch);
        // A journal ending cleanly in zeros has nothing to cut.
        let (dir, _, _) = journal_with_batches(2);
        assert!(check(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_damaged_tag_before_complete_batches_is_an_error() {
        let (dir, path, mut bytes) = journal_with_batches(3);
        bytes[0] ^= 0x5A; // the first batch's start tag
        let reason = verdict(&bytes).unwrap();
        assert!(reason.contains("byte 0"), "{reason}");
        // The same through the file (preallocated, holes skipped), and it stays untouched.
        let mut file = std::fs::read(&path).unwrap();
        file[0] ^= 0x5A;
        std::fs::write(&path, &file).unwrap();
        let err = check(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), file);
    }

    #[test]
    fn an_unwritten_page_before_later_batches_is_a_torn_tail() {
        // After a power loss, unsynced pages may reach the disk out of order: a page of zeros
        // (never written) with complete, unacknowledged batches after it.
        let (_dir, _, bytes) = journal_with_batches(2);
        let mut disk = bytes.clone();
        let page = usize::try_from(PAGE).unwrap();
        disk.resize(bytes.len().next_multiple_of(page) + page, 0);
        disk.extend_from_slice(&bytes);
        assert_eq!(verdict(&disk), None);
        // A damaged byte in that page: it is not an unwritten page, and the complete batches
        // after it make it an error.
        disk[bytes.len().next_multiple_of(page) + 10] = 0x77;
        assert!(verdict(&disk).is_some());
    }

    #[test]
    fn a_damaged_final_trailer_is_an_error() {
        let (_dir, _, mut bytes) = journal_with_batches(2);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x5A;
        let reason = verdict(&bytes).unwrap();
        assert!(reason.contains("damaged trailer"), "{reason}");
    }

    #[test]
    fn a_sequence_number_going_backwards_is_an_error() {
        let (_dir, _, mut bytes) = journal_with_batches(3);
        // Byte 12 is the top byte of the first batch's sequence number (tag, u32 count, u64).
        bytes[12] ^= 0x40;
        let reason = verdict(&bytes).unwrap();
        assert!(reason.contains("sequence number"), "{reason}");
    }
}
