//! One received instance on its way into the inbox, whether it came by
//! C-STORE or STOW-RS. The bytes are streamed, fragment by fragment, into a
//! hidden file under `<inbox>/.dicom-incoming/` — behind a Part 10 header
//! built from the C-STORE command and the presentation context's transfer
//! syntax, or as the Part 10 file a STOW-RS part is — so memory stays at one
//! fragment whatever the instance's size. Once complete, the file is read as
//! the scan reads files; an instance of a SOP class or transfer syntax the
//! node does not take, or of another study than the one expected, is
//! refused. An accepted one is renamed (atomic, same file system) to
//! `<inbox>/dicom-<16 hex of sha256(StudyInstanceUID)>/<16 hex of
//! sha256(SOPInstanceUID)>.dcm`: the inbox never sees a partial file, each
//! study is one folder that the quiet-period rule makes ready, a repeated
//! instance replaces itself, and no UID becomes a file name. Nothing of a
//! refused instance is kept.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use dicom_object::FileMetaTableBuilder;
use sha2::{Digest, Sha256};

/// Hidden from the inbox scan (a leading dot).
pub(crate) const INCOMING: &str = ".dicom-incoming";

/// Why an instance was not kept; [`status`](InstanceError::status) is the
/// C-STORE status and the STOW-RS failure reason (PS3.4 B.2.3, PS3.18 I.2.2).
#[derive(Debug, thiserror::Error)]
pub(crate) enum InstanceError {
    /// The inbox cannot be written.
    #[error("writing the instance: {0}")]
    Io(#[from] std::io::Error),
    /// Larger than `dicom.max_instance_bytes`.
    #[error("the data set exceeds {limit} bytes")]
    TooLarge { limit: u64 },
    /// Not readable DICOM, or without a StudyInstanceUID or SOP UIDs.
    #[error("the data set cannot be read: {0}")]
    Unreadable(String),
    /// A SOP class the node does not store.
    #[error("SOP class {0} is not stored here")]
    SopClass(String),
    /// A transfer syntax the reader cannot decode.
    #[error("transfer syntax {0} is not supported")]
    TransferSyntax(String),
    /// An instance of another study than the request named.
    #[error("the instance belongs to another study than the request's")]
    OtherStudy,
}

impl InstanceError {
    pub fn status(&self) -> u16 {
        match self {
            InstanceError::Io(_) | InstanceError::TooLarge { .. } => 0xA700,
            InstanceError::Unreadable(_) => 0xC000,
            InstanceError::SopClass(_) => 0x0122,
            InstanceError::TransferSyntax(_) => 0xC122,
            InstanceError::OtherStudy => 0x0110,
        }
    }
}

/// An instance that was not kept: why, and its SOP UIDs when they could be read.
#[derive(Debug)]
pub(crate) struct Refused {
    pub error: InstanceError,
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
}

impl From<InstanceError> for Refused {
    fn from(error: InstanceError) -> Self {
        Refused { error, sop_class_uid: None, sop_instance_uid: None }
    }
}

/// The UIDs of an instance that reached the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    pub study_uid: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

/// An instance being received.
pub(crate) struct Incoming {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    bytes: u64,
    limit: u64,
    /// Set once a fragment went past the limit: the rest is discarded.
    too_large: bool,
}

impl Incoming {
    /// A new hidden file for a C-STORE data set: the Part 10 preamble and
    /// file meta group first, from the command and the transfer syntax.
    pub fn for_data_set(
        inbox: &Path,
        sop_class_uid: &str,
        sop_instance_uid: &str,
        transfer_syntax: &str,
        limit: u64,
    ) -> Result<Incoming, InstanceError> {
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(sop_class_uid)
            .media_storage_sop_instance_uid(sop_instance_uid)
            .transfer_syntax(transfer_syntax)
            .build()
            .map_err(|e| InstanceError::Unreadable(e.to_string()))?;
        let mut incoming = Incoming::for_part10(inbox, limit)?;
        incoming.file.write_all(&[0u8; 128])?;
        incoming.file.write_all(b"DICM")?;
        meta.write(&mut incoming.file).map_err(|e| InstanceError::Unreadable(e.to_string()))?;
        Ok(incoming)
    }

    /// A new hidden file for a whole Part 10 file (a STOW-RS part).
    pub fn for_part10(inbox: &Path, limit: u64) -> Result<Incoming, InstanceError> {
        let dir = inbox.join(INCOMING);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        Ok(Incoming { path, file, bytes: 0, limit, too_large: false })
    }

    /// Appends one fragment (dropped once the instance is over its limit).
    pub fn append(&mut self, fragment: &[u8]) -> Result<(), InstanceError> {
        self.bytes += fragment.len() as u64;
        if self.bytes > self.limit {
            self.too_large = true;
            return Ok(());
        }
        self.file.write_all(fragment)?;
        Ok(())
    }

    /// Completes the instance: into its study folder when it is one the node
    /// takes (and of `study` when one is given), or removed with the reason.
    /// Blocking (file I/O and the header read): run it off the async threads.
    pub fn finish(self, inbox: &Path, study: Option<&str>) -> Result<Stored, Refused> {
        let Incoming { path, file, too_large, limit, .. } = self;
        let result = (|| {
            if too_large {
                return Err(InstanceError::TooLarge { limit }.into());
            }
            let file = file.into_inner().map_err(|e| InstanceError::Io(e.into_error()))?;
            file.sync_all().map_err(InstanceError::Io)?;
            drop(file);
            // The header and meta group on top of the data set limit.
            let opts =
                imaging::dicom::ScanOptions { max_file_bytes: limit.saturating_add(1 << 16), ..Default::default() };
            let id = imaging::dicom::instance_identity(&path, &opts)
                .map_err(|reason| InstanceError::Unreadable(reason.to_string()))?;
            let (class, instance) = (id.sop_class_uid.clone(), id.sop_instance_uid.clone());
            let stored = accept(id, study).map_err(|error| Refused {
                error,
                sop_class_uid: class,
                sop_instance_uid: instance,
            })?;
            let folder = inbox.join(format!("dicom-{}", short_hash(&stored.study_uid)));
            std::fs::create_dir_all(&folder).map_err(InstanceError::Io)?;
            std::fs::rename(&path, folder.join(format!("{}.dcm", short_hash(&stored.sop_instance_uid))))
                .map_err(InstanceError::Io)?;
            Ok(stored)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        result
    }

    /// Removes the partial file (an association or request that ended mid-instance).
    pub fn discard(self) {
        let Incoming { path, file, .. } = self;
        drop(file);
        let _ = std::fs::remove_file(path);
    }
}

/// Whether the node takes an instance with this identity (and of `study`).
fn accept(id: imaging::dicom::InstanceIdentity, study: Option<&str>) -> Result<Stored, InstanceError> {
    let missing = |what: &str| InstanceError::Unreadable(format!("no {what}"));
    let study_uid = id.study_uid.ok_or_else(|| missing("StudyInstanceUID"))?;
    let sop_class_uid = id.sop_class_uid.ok_or_else(|| missing("SOPClassUID"))?;
    let sop_instance_uid = id.sop_instance_uid.ok_or_else(|| missing("SOPInstanceUID"))?;
    if !super::STORAGE_SOP_CLASSES.contains(&sop_class_uid.as_str()) {
        return Err(InstanceError::SopClass(sop_class_uid));
    }
    if !imaging::dicom::DECODABLE_TRANSFER_SYNTAXES.contains(&id.transfer_syntax.as_str()) {
        return Err(InstanceError::TransferSyntax(id.transfer_syntax));
    }
    if study.is_some_and(|s| s != study_uid) {
        return Err(InstanceError::OtherStudy);
    }
    Ok(Stored { study_uid, sop_class_uid, sop_instance_uid })
}

/// The first 16 hex digits of the SHA-256 of a UID.
fn short_hash(uid: &str) -> String {
    hex::encode(&Sha256::digest(uid.trim_end_matches(['\0', ' ']).as_bytes())[..8])
}
