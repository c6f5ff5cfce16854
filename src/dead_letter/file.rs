//! Dead letters in a local NDJSON file: one letter per line, appended and flushed to disk (fsync)
//! before the cycle marks the entry rejected. The file and its lock are created readable by their
//! owner only (0600), in a directory created 0700: letters hold whole audit entries.
//!
//! A line is `{"kind":…,"key":…,"code":…,"reason":…,"at":…,"entry":<the entry, verbatim>}`. An entry
//! whose JSON text holds a line break (whitespace between tokens, which Kong never sends but JSON
//! allows) cannot sit on one line verbatim; it is written as `"entryText":"<the entry as a string>"`
//! instead, which gives back the same bytes.
//!
//! Writers and `redrive` serialize on `<file>.lock` (an advisory `flock`), so a redrive that rewrites
//! the file never drops a letter appended meanwhile.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{DeadLetter, DeadLetterError, DeadLetterSink};
use crate::kong::EntryKind;

/// The CLI's dead-letter file when none is configured: beside the embedded store's default path.
pub fn default_path() -> PathBuf {
    let state = crate::config::default_state_path();
    state.parent().unwrap_or(Path::new(".")).join("dead-letters.ndjson")
}

pub struct FileDeadLetters {
    path: PathBuf,
}

/// One line of a dead-letter file, as read back.
#[derive(Debug)]
pub struct Line {
    /// 1-based line number.
    pub number: usize,
    pub text: String,
    /// The letter, or why the line is not one.
    pub letter: Result<DeadLetter, String>,
}

impl FileDeadLetters {
    pub fn new(path: impl Into<PathBuf>) -> FileDeadLetters {
        FileDeadLetters { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the letters and flushes them to disk. Blocking; `send` runs it off the runtime.
    pub fn append(&self, letters: &[DeadLetter]) -> std::io::Result<()> {
        let mut buf = String::new();
        for letter in letters {
            buf.push_str(&to_line(letter));
            buf.push('\n');
        }
        let _lock = self.lock()?;
        let created = !self.path.exists();
        let mut file = open_private(&self.path, OpenOptions::new().create(true).append(true))?;
        file.write_all(buf.as_bytes())?;
        file.sync_all()?;
        if created {
            sync_dir(&self.path);
        }
        Ok(())
    }

    /// Every line of the file (none when it does not exist); lines that are not letters are kept
    /// with the reason, never dropped.
    pub fn read(&self) -> std::io::Result<Vec<Line>> {
        let _lock = self.lock()?;
        self.read_unlocked()
    }

    fn read_unlocked(&self) -> std::io::Result<Vec<Line>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut lines = Vec::new();
        for (i, text) in BufReader::new(file).lines().enumerate() {
            let text = text?;
            if text.trim().is_empty() {
                continue;
            }
            let letter = from_json(&text);
            lines.push(Line {
                number: i + 1,
                text,
                letter,
            });
        }
        Ok(lines)
    }

    /// Rewrites the file atomically under the lock: `edit` gets the current lines (including those
    /// appended since any earlier `read`) and returns the new text of each line to keep. The new
    /// file is written beside the old one (0600), flushed, then renamed over it.
    pub fn rewrite(&self, edit: impl FnOnce(Vec<Line>) -> Vec<String>) -> std::io::Result<()> {
        let _lock = self.lock()?;
        let kept = edit(self.read_unlocked()?);
        let tmp = self.path.with_extension(format!("tmp-{}", std::process::id()));
        let result = (|| {
            let mut file = open_private(&tmp, OpenOptions::new().create(true).write(true).truncate(true))?;
            let mut buf = String::new();
            for line in &kept {
                buf.push_str(line);
                buf.push('\n');
            }
            file.write_all(buf.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            sync_dir(&self.path);
            Ok(())
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// An exclusive advisory lock on `<file>.lock`, released when the guard is dropped.
    fn lock(&self) -> std::io::Result<File> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
        let mut name = self.path.as_os_str().to_owned();
        name.push(".lock");
        let lock = open_private(Path::new(&name), OpenOptions::new().create(true).append(true))?;
        lock.lock()?;
        Ok(lock)
    }
}

fn open_private(path: &Path, options: &mut OpenOptions) -> std::io::Result<File> {
    options.mode(0o600).open(path)
}

/// Makes a new directory entry durable; best effort (not every file system supports it).
fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(d) = File::open(dir)
    {
        let _ = d.sync_all();
    }
}

#[derive(Serialize)]
struct LineOut<'a> {
    kind: EntryKind,
    key: &'a str,
    code: &'a str,
    reason: &'a str,
    at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<&'a RawValue>,
    #[serde(rename = "entryText", skip_serializing_if = "Option::is_none")]
    entry_text: Option<&'a str>,
}

#[derive(Deserialize)]
struct LineIn {
    kind: EntryKind,
    key: String,
    code: String,
    reason: String,
    at: String,
    /// Present means present, even when the entry is JSON `null`.
    #[serde(default, deserialize_with = "present")]
    entry: Option<Box<RawValue>>,
    #[serde(rename = "entryText")]
    entry_text: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// A letter as one line of JSON (no line break in it), keeping the entry's bytes.
pub fn to_line(letter: &DeadLetter) -> String {
    let raw = letter.entry.get();
    let multiline = raw.contains(['\n', '\r']);
    let out = LineOut {
        kind: letter.kind,
        key: &letter.key,
        code: &letter.code,
        reason: &letter.reason,
        at: &letter.at,
        entry: (!multiline).then_some(&*letter.entry),
        entry_text: multiline.then_some(raw),
    };
    serde_json::to_string(&out).expect("a letter always serializes")
}

/// The inverse of `to_line` (also accepts a plain serialized `DeadLetter`).
pub fn from_json(text: &str) -> Result<DeadLetter, String> {
    let line: LineIn = serde_json::from_str(text).map_err(|e| format!("not a dead letter: {e}"))?;
    let entry = match (line.entry, line.entry_text) {
        (Some(raw), _) => raw,
        (None, Some(text)) => RawValue::from_string(text).map_err(|e| format!("entryText is not JSON: {e}"))?,
        (None, None) => return Err("not a dead letter: it has no entry".into()),
    };
    Ok(DeadLetter {
        kind: line.kind,
        key: line.key,
        code: line.code,
        reason: line.reason,
        at: line.at,
        entry,
    })
}

#[async_trait]
impl DeadLetterSink for FileDeadLetters {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), DeadLetterError> {
        if letters.is_empty() {
            return Ok(());
        }
        let file = FileDeadLetters::new(self.path.clone());
        let letters = letters.to_vec();
        let failed = |problem: String| DeadLetterError::File {
            path: self.path.display().to_string(),
            problem,
        };
        tokio::task::spawn_blocking(move || file.append(&letters))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))
    }

    fn describe(&self) -> String {
        format!("the dead-letter file {}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn letter(key: &str, entry: &str) -> DeadLetter {
        DeadLetter {
            kind: EntryKind::Request,
            key: key.into(),
            code: "InvalidData".into(),
            reason: "refused".into(),
            at: "2026-01-01T00:00:00Z".into(),
            entry: RawValue::from_string(entry.into()).unwrap(),
        }
    }

    #[test]
    fn letters_are_appended_one_per_line_in_a_private_file_and_read_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep/er/dead-letters.ndjson");
        let file = FileDeadLetters::new(&path);
        let multiline = "{\"request_id\":\"b\",\n \"x\" :\r\n[1, 2.50]}";
        file.append(&[letter("a", r#"{"request_id":"a","s":"é\u0001"}"#)]).unwrap();
        file.append(&[letter("n", "null")]).unwrap();
        file.append(&[letter("b", multiline)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        let back = file.read().unwrap();
        assert_eq!(back[0].letter.as_ref().unwrap().entry.get(), r#"{"request_id":"a","s":"é\u0001"}"#);
        assert_eq!(back[1].letter.as_ref().unwrap().entry.get(), "null", "a null entry is an entry");
        assert_eq!(back[2].letter.as_ref().unwrap().entry.get(), multiline);
        assert_eq!(back[2].number, 3);
        for p in [path.clone(), path.with_extension("ndjson.lock")] {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let dir_mode = std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode & 0o077, 0, "the directory is private: {dir_mode:o}");
    }

    #[test]
    fn a_rewrite_keeps_what_the_edit_keeps_and_stays_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.ndjson");
        let file = FileDeadLetters::new(&path);
        file.append(&[letter("a", r#"{"request_id":"a"}"#), letter("b", r#"{"request_id":"b"}"#)])
            .unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"not json\n")
            .unwrap();
        file.rewrite(|lines| {
            lines
                .into_iter()
                .filter(|l| l.letter.as_ref().map_or(true, |x| x.key != "a"))
                .map(|l| l.text)
                .collect()
        })
        .unwrap();
        let back = file.read().unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].letter.as_ref().unwrap().key, "b");
        assert!(back[1].letter.as_ref().unwrap_err().contains("not a dead letter"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp file left beside the file and its lock"
        );
    }

    #[test]
    fn a_missing_file_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(FileDeadLetters::new(dir.path().join("none")).read().unwrap().is_empty());
    }
}
