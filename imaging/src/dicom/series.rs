//! Instances → series → stacks.
//!
//! Owns grouping parsed instances by SeriesInstanceUID and splitting a series
//! that mixes orientations (a 3-plane localizer), image sizes or echoes into
//! separate stacks, each of which becomes one volume. It does not order
//! slices or check spacing (`geometry.rs`) and reads no files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::scan::Instance;
use crate::volume::SourceMeta;

/// Orientations whose IOP components differ by more than this (≈ 11°) are
/// different stacks; smaller differences stay together and are refused as
/// non-parallel by the geometry check rather than silently split.
const SPLIT_IOP_TOL: f64 = 0.2;

/// One frame of one instance, placed in a stack.
#[derive(Debug, Clone)]
pub(crate) struct SliceRef {
    pub instance: Arc<Instance>,
    /// Index into `instance.frames`.
    pub frame: usize,
}

/// One stack found by a scan: the unit that becomes a volume.
#[derive(Debug, Clone)]
pub struct SeriesSummary {
    /// The scanned folder.
    pub dir: PathBuf,
    pub series_uid: String,
    pub echo_number: Option<i32>,
    pub series_description: Option<String>,
    pub modality: Option<String>,
    /// Rows × Columns of every slice.
    pub rows: u16,
    pub cols: u16,
    /// Slices (frames) in the stack.
    pub slices: usize,
    /// Files contributing, sorted.
    pub files: Vec<PathBuf>,
    /// 0 for the first orientation of the series, 1 for the next, … (localizers).
    pub orientation_group: usize,
    pub(crate) parts: Vec<SliceRef>,
    pub(crate) meta: SourceMeta,
}

impl SeriesSummary {
    /// The acquisition and equipment fields of the stack (read from its first
    /// instance; never patient-identifying attributes).
    pub fn meta(&self) -> &SourceMeta {
        &self.meta
    }

    /// ImageOrientationPatient (row cosine, column cosine) of the stack's
    /// first slice that has one; `None` when no slice carries geometry.
    pub fn orientation(&self) -> Option<[f64; 6]> {
        self.parts.iter().find_map(|p| p.instance.frames.get(p.frame)?.geometry.map(|g| g.orientation))
    }

    /// The slice normal (row cosine × column cosine), from [`orientation`](Self::orientation).
    pub fn slice_normal(&self) -> Option<[f64; 3]> {
        let o = self.orientation()?;
        let (r, c) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
        Some([r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]])
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct StackKey {
    series: String,
    echo_number: Option<i32>,
    /// EchoTime in µs, when EchoNumbers is absent.
    echo_time_us: Option<i64>,
    orientation_group: usize,
    rows: u16,
    cols: u16,
}

/// Groups instances into stacks, in a deterministic order.
pub(crate) fn group(dir: &std::path::Path, instances: Vec<Instance>) -> Vec<SeriesSummary> {
    let mut orientations: BTreeMap<String, Vec<[f64; 6]>> = BTreeMap::new();
    let mut stacks: BTreeMap<StackKey, Vec<SliceRef>> = BTreeMap::new();
    for inst in instances {
        let inst = Arc::new(inst);
        // Without a SeriesInstanceUID a file is its own series: never merge unrelated images.
        let series = inst.series_uid.clone().unwrap_or_else(|| format!("(no series uid) {}", inst.path.display()));
        for (frame, f) in inst.frames.iter().enumerate() {
            let known = orientations.entry(series.clone()).or_default();
            let orientation_group = match f.geometry.map(|g| g.orientation) {
                Some(o) => {
                    match known.iter().position(|k| k.iter().zip(&o).all(|(a, b)| (a - b).abs() <= SPLIT_IOP_TOL)) {
                        Some(i) => i,
                        None => {
                            known.push(o);
                            known.len() - 1
                        }
                    }
                }
                None => usize::MAX,
            };
            let key = StackKey {
                series: series.clone(),
                echo_number: inst.meta.echo_number,
                echo_time_us: if inst.meta.echo_number.is_some() {
                    None
                } else {
                    inst.meta.echo_time_ms.map(|t| (t * 1000.0).round() as i64)
                },
                orientation_group,
                rows: inst.rows,
                cols: inst.cols,
            };
            stacks.entry(key).or_default().push(SliceRef { instance: Arc::clone(&inst), frame });
        }
    }
    stacks
        .into_iter()
        .filter_map(|(key, parts)| {
            let first = parts.first()?;
            let mut meta = first.instance.meta.clone();
            meta.source = dir.display().to_string();
            let mut files: Vec<PathBuf> = parts.iter().map(|p| p.instance.path.clone()).collect();
            files.sort();
            files.dedup();
            Some(SeriesSummary {
                dir: dir.to_path_buf(),
                series_uid: key.series,
                echo_number: key.echo_number,
                series_description: meta.series_description.clone(),
                modality: meta.modality.clone(),
                rows: key.rows,
                cols: key.cols,
                slices: parts.len(),
                files,
                orientation_group: if key.orientation_group == usize::MAX { 0 } else { key.orientation_group },
                parts,
                meta,
            })
        })
        .collect()
}
