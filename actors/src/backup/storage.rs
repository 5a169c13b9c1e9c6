//! Where backups are kept: a local directory (`backup.storage = "dir"`) or
//! an S3-compatible bucket (`backup.storage = "s3"`, [`s3::S3Storage`]).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use super::{io_error, BackupError};

pub mod s3;

/// A place that stores backup objects by key (`daily/2026-12-02T05-13-00Z.dump`).
/// Its methods and those of an [`Upload`] block (files, the network): call
/// them from a blocking thread (`spawn_blocking`), not on an async task.
pub trait Storage: Send + Sync {
    /// The name recorded in `backups.storage`.
    fn name(&self) -> &'static str;
    /// Where the object of `key` is, for people to read.
    fn location(&self, key: &str) -> String;
    /// A new object, written under a temporary name: it takes `key` only on
    /// [`Upload::commit`], and a dropped upload leaves nothing behind.
    fn create(&self, key: &str) -> Result<Box<dyn Upload>, BackupError>;
    /// A local file holding the object (for a directory, the object itself;
    /// for a bucket, a temporary copy that is deleted when dropped).
    fn fetch(&self, key: &str) -> Result<Fetched, BackupError>;
    /// Removes the object of `key` and whatever an unfinished upload of it
    /// left; one already gone is not an error.
    fn delete(&self, key: &str) -> Result<(), BackupError>;
    /// The keys of every committed object, sorted.
    fn list(&self) -> Result<Vec<String>, BackupError>;
}

/// An object being written.
pub trait Upload: Write + Send {
    /// Makes the object durable and visible under its key.
    fn commit(self: Box<Self>) -> Result<(), BackupError>;
}

/// An object fetched to a local file, kept as long as this lives.
#[derive(Debug)]
pub struct Fetched {
    path: PathBuf,
    /// A temporary copy, deleted on drop (None: the object itself).
    _temporary: Option<tempfile::TempPath>,
}

impl Fetched {
    /// The object's own file, which stays.
    pub fn in_place(path: PathBuf) -> Fetched {
        Fetched {
            path,
            _temporary: None,
        }
    }

    /// A temporary copy, deleted when this is dropped.
    pub fn temporary(copy: tempfile::TempPath) -> Fetched {
        Fetched {
            path: copy.to_path_buf(),
            _temporary: Some(copy),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Refuses a key that is empty or not a plain relative path (`..`, `/…`):
/// keys are `kind/time.dump`, and a directory's must stay inside it.
pub(crate) fn check_key(key: &str) -> Result<&Path, BackupError> {
    let relative = Path::new(key);
    let plain = relative.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain || key.is_empty() {
        return Err(BackupError::Unknown(key.to_owned()));
    }
    Ok(relative)
}

/// Backups as files under one directory (`$data_dir/backups`), readable by
/// their owner only.
#[derive(Debug, Clone)]
pub struct DirStorage {
    root: PathBuf,
}

impl DirStorage {
    pub fn new(root: PathBuf) -> DirStorage {
        DirStorage { root }
    }

    /// The file of `key`; a key that would leave the directory is refused.
    fn path(&self, key: &str) -> Result<PathBuf, BackupError> {
        Ok(self.root.join(check_key(key)?))
    }
}

impl Storage for DirStorage {
    fn name(&self) -> &'static str {
        "dir"
    }

    fn location(&self, key: &str) -> String {
        self.root.join(key).display().to_string()
    }

    fn create(&self, key: &str) -> Result<Box<dyn Upload>, BackupError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_owned();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_error(&dir))?;
        let temporary = partial_path(&path);
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io_error(&temporary))?;
        Ok(Box::new(DirUpload {
            file: io::BufWriter::with_capacity(1 << 20, file),
            temporary,
            path,
            committed: false,
        }))
    }

    fn fetch(&self, key: &str) -> Result<Fetched, BackupError> {
        let path = self.path(key)?;
        if path.is_file() {
            Ok(Fetched::in_place(path))
        } else {
            Err(BackupError::Missing {
                key: key.to_owned(),
                location: path.display().to_string(),
            })
        }
    }

    fn delete(&self, key: &str) -> Result<(), BackupError> {
        let path = self.path(key)?;
        for file in [partial_path(&path), path] {
            match fs::remove_file(&file) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&file)(e)),
                _ => {}
            }
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>, BackupError> {
        let mut keys = Vec::new();
        let mut folders = vec![self.root.clone()];
        while let Some(folder) = folders.pop() {
            let entries = match fs::read_dir(&folder) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                entries => entries.map_err(io_error(&folder))?,
            };
            for entry in entries {
                let path = entry.map_err(io_error(&folder))?.path();
                // Dot files are uploads under way and fetched copies.
                let hidden = path
                    .file_name()
                    .is_some_and(|name| name.to_string_lossy().starts_with('.'));
                if hidden {
                    continue;
                }
                if path.is_dir() {
                    folders.push(path);
                } else if let Ok(key) = path.strip_prefix(&self.root) {
                    keys.push(key.to_string_lossy().into_owned());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// Where the object at `path` is written until it is committed.
fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

struct DirUpload {
    file: io::BufWriter<fs::File>,
    temporary: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Write for DirUpload {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.file.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Upload for DirUpload {
    fn commit(mut self: Box<Self>) -> Result<(), BackupError> {
        self.file.flush().map_err(io_error(&self.temporary))?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(io_error(&self.temporary))?;
        if self.path.exists() {
            return Err(BackupError::Exists(self.path.display().to_string()));
        }
        fs::rename(&self.temporary, &self.path).map_err(io_error(&self.path))?;
        self.committed = true;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_error(dir))?;
        }
        Ok(())
    }
}

impl Drop for DirUpload {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temporary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_takes_its_key_only_when_committed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = DirStorage::new(dir.path().join("backups"));
        let mut upload = storage.create("daily/a.dump").expect("create");
        upload.write_all(b"dump").expect("write");
        assert!(storage.fetch("daily/a.dump").is_err());
        upload.commit().expect("commit");
        let fetched = storage.fetch("daily/a.dump").expect("fetch");
        assert_eq!(fs::read(fetched.path()).expect("read"), b"dump");
        drop(fetched);
        assert!(storage.fetch("daily/a.dump").is_ok(), "the object itself stays");
        storage.delete("daily/a.dump").expect("delete");
        assert!(storage.fetch("daily/a.dump").is_err());
        storage.delete("daily/a.dump").expect("deleting what is gone");
    }

    #[test]
    fn a_dropped_upload_leaves_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = DirStorage::new(dir.path().to_owned());
        let mut upload = storage.create("daily/b.dump").expect("create");
        upload.write_all(b"half a dump").expect("write");
        drop(upload);
        let left: Vec<_> = fs::read_dir(dir.path().join("daily")).expect("dir").collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn listing_shows_committed_objects_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = DirStorage::new(dir.path().join("backups"));
        assert!(storage
            .list()
            .expect("an absent directory lists nothing")
            .is_empty());
        for key in ["weekly/b.dump", "daily/a.dump", "daily/a.dump.json"] {
            let mut upload = storage.create(key).expect("create");
            upload.write_all(b"x").expect("write");
            upload.commit().expect("commit");
        }
        let mut unfinished = storage.create("daily/c.dump").expect("create");
        unfinished.write_all(b"half").expect("write");
        assert_eq!(
            storage.list().expect("list"),
            ["daily/a.dump", "daily/a.dump.json", "weekly/b.dump"]
        );
    }

    #[test]
    fn deleting_removes_what_an_interrupted_upload_left() {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = DirStorage::new(dir.path().to_owned());
        let mut upload = storage.create("daily/c.dump").expect("create");
        upload.write_all(b"half a dump").expect("write");
        // As a process killed half-way through leaves it: never dropped.
        std::mem::forget(upload);
        assert!(dir.path().join("daily/.c.dump.partial").exists());
        storage.delete("daily/c.dump").expect("delete");
        let left: Vec<_> = fs::read_dir(dir.path().join("daily")).expect("dir").collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn keys_stay_inside_the_directory() {
        let storage = DirStorage::new(PathBuf::from("/srv/backups"));
        assert!(storage.fetch("../etc/passwd").is_err());
        assert!(storage.fetch("/etc/passwd").is_err());
    }
}
