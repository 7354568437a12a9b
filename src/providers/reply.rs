//! A model's reply text as it streams in. A short reply stays in memory; once it passes
//! [`SPILL_AT`] bytes it moves to an unnamed temporary file and only the last few kilobytes stay
//! in memory, so a 20 MB reply costs disk, not 20 MB (or, with a growing `String`'s doubling,
//! 32 MB) of memory. Readers search and slice it by byte offset without loading it whole.
//!
//! Nothing is lost when the file cannot be made or written: the text then stays in memory.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// Bytes held in memory before a reply moves to a file: every ordinary answer stays below it.
const SPILL_AT: usize = 1 << 20;
/// Bytes gathered between two writes to the file, and read at a time when searching.
const CHUNK: usize = 64 << 10;

/// The text of one reply, in memory or partly in a temporary file.
#[derive(Default)]
pub struct ReplyText {
    /// The reply's first `on_disk` bytes, once it outgrew memory.
    file: Option<File>,
    /// Bytes in `file`.
    on_disk: usize,
    /// The rest of the text (all of it while there is no file).
    tail: String,
    /// The file could not be made or written: keep everything in memory from now on.
    stay_in_memory: bool,
}

impl ReplyText {
    /// An empty reply.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends streamed text.
    pub fn push_str(&mut self, text: &str) {
        self.tail.push_str(text);
        let due = if self.file.is_some() { CHUNK } else { SPILL_AT };
        if self.tail.len() >= due && !self.stay_in_memory {
            self.spill();
        }
    }

    /// Moves the in-memory part to the file (made on first use).
    fn spill(&mut self) {
        if self.file.is_none() {
            match tempfile::tempfile() {
                Ok(f) => self.file = Some(f),
                Err(_) => {
                    self.stay_in_memory = true;
                    return;
                }
            }
        }
        let Some(file) = &self.file else { return };
        match file.write_all_at(self.tail.as_bytes(), self.on_disk as u64) {
            Ok(()) => {
                self.on_disk += self.tail.len();
                // A fresh buffer: the first spill's one may be a megabyte or two.
                self.tail = String::with_capacity(CHUNK + CHUNK / 2);
            }
            // What was written past `on_disk` is ignored; the tail still holds it.
            Err(_) => self.stay_in_memory = true,
        }
    }

    /// Bytes of text.
    pub fn len(&self) -> usize {
        self.on_disk + self.tail.len()
    }

    /// True when no text came.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when part of the text is in a file.
    pub fn spilled(&self) -> bool {
        self.on_disk > 0
    }

    /// Fills `buf` from byte `at` on; fewer bytes only at the end of the text.
    fn read_at(&self, at: usize, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        if at < self.on_disk
            && let Some(file) = &self.file
        {
            let n = buf.len().min(self.on_disk - at);
            file.read_exact_at(&mut buf[..n], at as u64)?;
            filled = n;
        }
        let from = (at + filled).saturating_sub(self.on_disk);
        let rest = self.tail.as_bytes().get(from..).unwrap_or_default();
        let n = rest.len().min(buf.len() - filled);
        buf[filled..filled + n].copy_from_slice(&rest[..n]);
        Ok(filled + n)
    }

    /// The text from `start` to `end`, both on character boundaries.
    pub fn slice(&self, start: usize, end: usize) -> io::Result<String> {
        let mut bytes = vec![0; end.saturating_sub(start)];
        let n = self.read_at(start, &mut bytes)?;
        bytes.truncate(n);
        String::from_utf8(bytes).map_err(not_text)
    }

    /// Up to `max` bytes from `start` (a character boundary), shortened to end on one.
    fn chunk(&self, start: usize, max: usize) -> io::Result<String> {
        let mut bytes = vec![0; max.min(self.len().saturating_sub(start))];
        let n = self.read_at(start, &mut bytes)?;
        bytes.truncate(n);
        match String::from_utf8(bytes) {
            Ok(s) => Ok(s),
            // Cut inside a character at the end: keep what precedes it.
            Err(e) if e.utf8_error().error_len().is_none() => {
                let valid = e.utf8_error().valid_up_to();
                let mut bytes = e.into_bytes();
                bytes.truncate(valid);
                String::from_utf8(bytes).map_err(not_text)
            }
            Err(e) => Err(not_text(e)),
        }
    }

    /// Where `needle` first occurs at or after byte `from` (a character boundary).
    pub fn find(&self, needle: &str, from: usize) -> io::Result<Option<usize>> {
        if self.file.is_none() {
            return Ok(self
                .tail
                .get(from..)
                .and_then(|t| t.find(needle))
                .map(|i| i + from));
        }
        let mut start = from;
        // Small first: a match is often near (the next fence, the next brace); then larger.
        let mut size = 1024;
        while start < self.len() {
            let text = self.chunk(start, size.max(needle.len() * 2 + 4))?;
            size = (size * 4).min(CHUNK);
            if let Some(i) = text.find(needle) {
                return Ok(Some(start + i));
            }
            if start + text.len() >= self.len() || text.is_empty() {
                break;
            }
            // Step on so a match across the two chunks is still seen.
            let mut next = text.len().saturating_sub(needle.len().saturating_sub(1));
            while !text.is_char_boundary(next) {
                next += 1;
            }
            start += next.max(1);
        }
        Ok(None)
    }

    /// Reads the text from byte `from` on.
    pub fn reader(&self, from: usize) -> ReplyReader<'_> {
        ReplyReader {
            reply: self,
            at: from,
        }
    }

    /// The whole text as one string (for what must be held: a conversation turn, an artifact).
    pub fn into_string(self) -> io::Result<String> {
        if self.file.is_none() {
            return Ok(self.tail);
        }
        let mut text = self.slice(0, self.on_disk)?;
        text.push_str(&self.tail);
        Ok(text)
    }
}

/// The error for bytes that are not text (an offset inside a character), without the bytes.
fn not_text(e: std::string::FromUtf8Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.utf8_error())
}

impl From<String> for ReplyText {
    fn from(text: String) -> Self {
        Self {
            tail: text,
            ..Self::default()
        }
    }
}

impl From<&str> for ReplyText {
    fn from(text: &str) -> Self {
        Self::from(text.to_owned())
    }
}

impl std::fmt::Debug for ReplyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyText")
            .field("len", &self.len())
            .field("spilled", &self.spilled())
            .finish()
    }
}

/// Compares the text; a reply whose file cannot be read equals nothing.
impl PartialEq<str> for ReplyText {
    fn eq(&self, other: &str) -> bool {
        self.len() == other.len() && self.slice(0, self.len()).is_ok_and(|t| t == other)
    }
}

impl PartialEq<&str> for ReplyText {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

impl PartialEq for ReplyText {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && match (self.slice(0, self.len()), other.slice(0, other.len())) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
    }
}

/// A reply read from some offset on ([`ReplyText::reader`]).
pub struct ReplyReader<'a> {
    reply: &'a ReplyText,
    at: usize,
}

impl Read for ReplyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reply.read_at(self.at, buf)?;
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply of `n` lines of mixed-width characters, pushed in small pieces.
    fn long_reply(n: usize) -> (ReplyText, String) {
        let mut reply = ReplyText::new();
        let mut whole = String::new();
        for i in 0..n {
            let line = format!("line {i}: ünïcödé ✓ text\n");
            reply.push_str(&line);
            whole.push_str(&line);
        }
        (reply, whole)
    }

    #[test]
    fn a_long_reply_moves_to_a_file_and_reads_back_whole() {
        let (reply, whole) = long_reply(100_000);
        assert!(whole.len() > 2 * SPILL_AT);
        assert!(reply.spilled());
        assert!(
            reply.tail.capacity() < 2 * CHUNK,
            "memory holds only the tail"
        );
        assert_eq!(reply.len(), whole.len());
        let mut read = String::new();
        reply
            .reader(0)
            .read_to_string(&mut read)
            .expect("read back");
        assert_eq!(read, whole);
        assert_eq!(reply.into_string().expect("whole"), whole);
    }

    #[test]
    fn find_sees_matches_across_chunks_and_at_the_end() {
        let (mut reply, mut whole) = long_reply(100_000);
        reply.push_str("THE END");
        whole.push_str("THE END");
        for needle in [
            "line 99999:",
            "line 4321:",
            "✓ text\nline 77777",
            "THE END",
            "nowhere",
        ] {
            assert_eq!(
                reply.find(needle, 0).expect("find"),
                whole.find(needle),
                "{needle}"
            );
        }
        let first = whole.find("line 5000:").expect("there");
        assert_eq!(
            reply.find("line", first + 1).expect("find"),
            whole[first + 1..].find("line").map(|i| i + first + 1)
        );
        // Every chunk boundary: a needle that starts in one chunk and ends in the next.
        for at in (CHUNK..whole.len() - 40).step_by(CHUNK).take(30) {
            let start = (at - 5..at)
                .find(|&i| whole.is_char_boundary(i))
                .expect("boundary");
            let end = (start + 12..start + 20)
                .find(|&i| whole.is_char_boundary(i))
                .expect("boundary");
            let needle = &whole[start..end];
            let from = (0..start)
                .rev()
                .find(|&i| whole.is_char_boundary(i))
                .unwrap_or(0);
            let found = reply.find(needle, from).expect("find");
            assert_eq!(found, whole[from..].find(needle).map(|i| i + from));
        }
    }

    #[test]
    fn a_short_reply_stays_in_memory() {
        let mut reply = ReplyText::new();
        reply.push_str("short ");
        reply.push_str("answer");
        assert!(!reply.spilled());
        assert_eq!(reply, "short answer");
        assert_eq!(reply.find("answer", 0).expect("find"), Some(6));
        assert_eq!(reply.slice(0, 5).expect("slice"), "short");
    }
}
