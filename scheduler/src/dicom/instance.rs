//! One received instance on its way into the inbox. The data set is
//! streamed, fragment by fragment, into a hidden file under
//! `<inbox>/.dicom-incoming/` behind a Part 10 header built from the
//! C-STORE command (SOP class and instance) and the presentation context's
//! transfer syntax — memory stays at one PDU whatever the instance's size.
//! Once complete, its StudyInstanceUID is read as the scan reads files, and
//! the file is renamed (atomic, same file system) to
//! `<inbox>/dicom-<16 hex of sha256(StudyInstanceUID)>/<16 hex of
//! sha256(SOPInstanceUID)>.dcm`: the inbox never sees a partial file, each
//! study is one folder that the quiet-period rule makes ready, a repeated
//! instance replaces itself, and no UID becomes a file name.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use dicom_object::FileMetaTableBuilder;
use sha2::{Digest, Sha256};

/// Hidden from the inbox scan (a leading dot).
pub(crate) const INCOMING: &str = ".dicom-incoming";

/// Why an instance was not kept; the C-STORE status says which.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InstanceError {
    /// The inbox cannot be written (out of resources: 0xA700).
    #[error("writing the instance: {0}")]
    Io(#[from] std::io::Error),
    /// Larger than `dicom.max_instance_bytes` (out of resources: 0xA700).
    #[error("the data set exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    /// Not readable DICOM, or no StudyInstanceUID (cannot understand: 0xC000).
    #[error("the data set cannot be read: {0}")]
    Unreadable(String),
}

impl InstanceError {
    /// The C-STORE-RSP status (PS3.4 Annex B.2.3).
    pub fn status(&self) -> u16 {
        match self {
            InstanceError::Io(_) | InstanceError::TooLarge { .. } => 0xA700,
            InstanceError::Unreadable(_) => 0xC000,
        }
    }
}

/// An instance being received.
pub(crate) struct Incoming {
    path: PathBuf,
    sop_instance_uid: String,
    file: std::io::BufWriter<std::fs::File>,
    data_bytes: u64,
    limit: u64,
    /// Set once a fragment went past the limit: the rest is discarded.
    too_large: bool,
}

impl Incoming {
    /// A new hidden file with the Part 10 preamble and file meta group.
    pub fn create(
        inbox: &Path,
        sop_class_uid: &str,
        sop_instance_uid: &str,
        transfer_syntax: &str,
        limit: u64,
    ) -> Result<Incoming, InstanceError> {
        let dir = inbox.join(INCOMING);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(sop_class_uid)
            .media_storage_sop_instance_uid(sop_instance_uid)
            .transfer_syntax(transfer_syntax)
            .build()
            .map_err(|e| InstanceError::Unreadable(e.to_string()))?;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        file.write_all(&[0u8; 128])?;
        file.write_all(b"DICM")?;
        meta.write(&mut file).map_err(|e| InstanceError::Unreadable(e.to_string()))?;
        Ok(Incoming {
            path,
            sop_instance_uid: sop_instance_uid.to_string(),
            file,
            data_bytes: 0,
            limit,
            too_large: false,
        })
    }

    /// Appends one data fragment (dropped once the instance is over its limit).
    pub fn append(&mut self, fragment: &[u8]) -> Result<(), InstanceError> {
        self.data_bytes += fragment.len() as u64;
        if self.data_bytes > self.limit {
            self.too_large = true;
            return Ok(());
        }
        self.file.write_all(fragment)?;
        Ok(())
    }

    /// Completes the instance: into its study folder, or removed with the reason.
    /// Blocking (file I/O and the header read): run it off the async threads.
    pub fn finish(self, inbox: &Path, max_bytes: u64) -> Result<PathBuf, InstanceError> {
        let Incoming { path, file, too_large, limit, sop_instance_uid, .. } = self;
        let result = (|| {
            if too_large {
                return Err(InstanceError::TooLarge { limit });
            }
            let file = file.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            let opts = imaging::dicom::ScanOptions { max_file_bytes: max_bytes, ..Default::default() };
            let study = imaging::dicom::study_uid_of_file(&path, &opts)
                .map_err(|reason| InstanceError::Unreadable(reason.to_string()))?
                .ok_or_else(|| InstanceError::Unreadable("no StudyInstanceUID".into()))?;
            let folder = inbox.join(format!("dicom-{}", short_hash(&study)));
            std::fs::create_dir_all(&folder)?;
            let target = folder.join(format!("{}.dcm", short_hash(&sop_instance_uid)));
            std::fs::rename(&path, &target)?;
            Ok(target)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        result
    }

    /// Removes the partial file (an association that ended mid-instance).
    pub fn discard(self) {
        let Incoming { path, file, .. } = self;
        drop(file);
        let _ = std::fs::remove_file(path);
    }
}

/// The first 16 hex digits of the SHA-256 of a UID.
fn short_hash(uid: &str) -> String {
    Sha256::digest(uid.trim_end_matches(['\0', ' ']).as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}
