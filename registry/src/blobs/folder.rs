//! Blocks as files under the data folder: `blocks/<file id>/<block id in
//! hex>`, each written whole (to a `.partial` file, then renamed). A commit
//! leaves the named blocks where they are (the commit's metadata lives in
//! the state store); the blocks it did not name are removed once it is
//! recorded.

use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{BlobError, BlockId, FileStore, Placed};

/// The blocks folder of one data folder.
#[derive(Debug, Clone)]
pub struct FolderBlobs {
    root: PathBuf,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> BlobError {
    move |source| BlobError::Io { what, source }
}

impl FolderBlobs {
    /// The blocks folder `root` (created if missing).
    pub fn open(root: &Path) -> Result<FolderBlobs, String> {
        std::fs::create_dir_all(root)
            .map_err(|error| format!("cannot create {}: {error}", root.display()))?;
        Ok(FolderBlobs {
            root: root.to_path_buf(),
        })
    }

    /// Where the blocks of `file_id` live.
    pub fn file_dir(&self, file_id: &str) -> PathBuf {
        self.root.join(file_id)
    }

    fn block_path(&self, file_id: &str, id: &BlockId) -> PathBuf {
        self.file_dir(file_id).join(crate::files::hex(id.bytes()))
    }

    fn read(&self, file_id: &str, id: &BlockId) -> Result<Vec<u8>, BlobError> {
        let path = self.block_path(file_id, id);
        std::fs::read(&path).map_err(io(format!("cannot read {}", path.display())))
    }
}

impl FileStore for FolderBlobs {
    fn describe(&self) -> String {
        format!("the folder {}", self.root.display())
    }

    fn put_block(&self, file_id: &str, id: &BlockId, block: &[Bytes]) -> Result<(), BlobError> {
        let path = self.block_path(file_id, id);
        let dir = self.file_dir(file_id);
        std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let partial = path.with_extension("partial");
        let mut file = std::fs::File::create(&partial)
            .map_err(io(format!("cannot create {}", partial.display())))?;
        for frame in block {
            file.write_all(frame)
                .map_err(io(format!("cannot write {}", partial.display())))?;
        }
        drop(file);
        std::fs::rename(&partial, &path).map_err(io(format!("cannot rename {}", partial.display())))
    }

    fn commit(&self, _file_id: &str, _blocks: &[BlockId], _data: &str) -> Result<(), BlobError> {
        // The named blocks already are the file; its metadata is in the state store.
        Ok(())
    }

    fn read_block(&self, file_id: &str, block: &Placed) -> Result<Vec<u8>, BlobError> {
        self.read(file_id, &block.id)
    }

    fn read_file(&self, file_id: &str, blocks: &[BlockId]) -> Result<Vec<u8>, BlobError> {
        let mut content = Vec::new();
        for id in blocks {
            content.extend_from_slice(&self.read(file_id, id)?);
        }
        Ok(content)
    }

    fn prune(&self, file_id: &str, keep: &[BlockId]) {
        let keep: Vec<String> = keep
            .iter()
            .map(|id| crate::files::hex(id.bytes()))
            .collect();
        let Ok(entries) = std::fs::read_dir(self.file_dir(file_id)) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn delete(&self, file_id: &str) -> Result<(), BlobError> {
        let dir = self.file_dir(file_id);
        match std::fs::remove_dir_all(&dir) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(BlobError::Io {
                what: format!("cannot remove {}", dir.display()),
                source: error,
            }),
            _ => Ok(()),
        }
    }
}
