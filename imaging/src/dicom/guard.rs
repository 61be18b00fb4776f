//! Element-length check before a file reaches the DICOM parser.
//!
//! Owns one question: does every element length in a Part 10 file fit in the
//! bytes that are actually there? dicom-parser reserves a value's declared
//! length before reading it, so one corrupt 32-bit length would allocate up
//! to 4 GiB. This walker visits every element header (descending into
//! sequences and items, skipping pixel fragments) without allocating, and
//! refuses the file if any length runs past its end. It does not interpret
//! values; the transfer syntax UID is the only value it reads. A deflated
//! data set is inflated (up to [`MAX_INFLATED`] bytes) and walked the same way.
//!
//! [`check_header`] walks a *prefix* of a file only as far as the top-level
//! PixelData element (whose declared length must fit in the whole file), so
//! a scan reads headers, not images; it says when the prefix is too short.

use std::cell::Cell;
use std::io::Read;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::{Tag, VR};
use dicom_dictionary_std::StandardDataDictionary;
use flate2::read::DeflateDecoder;

/// Undefined length (sequences, items and encapsulated pixel data).
const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Deeper nesting than this is not an image: refuse rather than recurse.
const MAX_DEPTH: u32 = 32;
/// Largest inflated data set checked (pixel data included): a deflate bomb
/// stops here instead of filling memory.
const MAX_INFLATED: u64 = 1 << 30;

pub(crate) const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
pub(crate) const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
pub(crate) const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// `true` for the "DICM" magic after the 128-byte preamble (PS3.10 §7.1).
pub(crate) fn has_preamble(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM".as_slice())
}

/// What the walk learned on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checked {
    pub transfer_syntax: String,
    /// A top-level PixelData element exists (assumed for deflated files).
    pub has_pixel_data: bool,
}

/// What a header walk of a prefix found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderWalk {
    /// Every element before the pixel data (or in the whole file, when it has
    /// none) checked.
    Done(Checked),
    /// The prefix ends before the walk could: read more of the file.
    NeedMore,
    /// A deflated data set: only the whole file can be checked ([`check_lengths`]).
    Deflated,
}

/// Checks every element length; returns the transfer syntax and whether there is pixel data.
pub(crate) fn check_lengths(bytes: &[u8]) -> Result<Checked, String> {
    match walk(bytes, bytes.len(), false)? {
        HeaderWalk::Done(checked) => Ok(checked),
        // Unreachable with the whole file: a prefix never runs short.
        HeaderWalk::NeedMore | HeaderWalk::Deflated => Err("file ends inside the data set".to_string()),
    }
}

/// Checks the element lengths of `prefix` (the first bytes of a file of
/// `file_len` bytes) up to the top-level PixelData element, whose declared
/// length must fit in the file; its value is not read.
pub(crate) fn check_header(prefix: &[u8], file_len: usize) -> Result<HeaderWalk, String> {
    walk(prefix, file_len.max(prefix.len()), true)
}

fn walk(bytes: &[u8], total: usize, header_only: bool) -> Result<HeaderWalk, String> {
    let mut w = Walker::new(bytes, total, header_only);
    let r = walk_file(&mut w);
    if r.is_err() && w.need_more.get() {
        return Ok(HeaderWalk::NeedMore);
    }
    r
}

fn walk_file(w: &mut Walker<'_>) -> Result<HeaderWalk, String> {
    // The file meta group is always explicit VR little endian.
    let mut pos = 132;
    // dicom-object reads the meta group by its length (0002,0000), off-group
    // elements included, and starts the data set where that count runs out:
    // the walk must start the data set at the same byte, or it checks other lengths.
    let group_length = (w.u16_at(132) == Some(2) && w.u16_at(134) == Some(0) && w.b.get(136..140) == Some(b"UL\x04\0"))
        .then(|| w.u32_at(140))
        .flatten();
    if let Some(group_length) = group_length {
        pos = 144;
        while pos - 144 < group_length as usize {
            pos = if w.u16_at(pos) == Some(0xFFFE) {
                // Read like the parser reads it: tag and 32-bit length, no VR.
                let len = w.u32_at(pos + 4).ok_or_else(|| w.short(pos))?;
                w.bounded(pos + 8, len)?
            } else {
                w.element(pos, true)?
            };
        }
    } else {
        while w.u16_at(pos) == Some(0x0002) {
            pos = w.element(pos, true)?;
        }
    }
    let ts = w.ts.take().ok_or_else(|| "file meta group has no transfer syntax".to_string())?;
    match ts.as_str() {
        // The parser inflates and then reserves declared lengths like anywhere
        // else (a corrupt stream claimed 4 GiB), so the inflated set is walked too.
        DEFLATED if w.header_only => return Ok(HeaderWalk::Deflated),
        DEFLATED => {
            let inflated = inflate(w.b.get(pos..).unwrap_or_default())?;
            let mut w = Walker::new(&inflated, inflated.len(), false);
            w.dataset(0, inflated.len())?;
            return Ok(HeaderWalk::Done(Checked { transfer_syntax: ts, has_pixel_data: w.pixel_data }));
        }
        IMPLICIT_LE => w.explicit = false,
        EXPLICIT_BE => w.big = true,
        _ => {}
    }
    w.dataset(pos, w.total)?;
    Ok(HeaderWalk::Done(Checked { transfer_syntax: ts, has_pixel_data: w.pixel_data }))
}

/// Inflates a deflated data set (PS3.5 §A.5: raw deflate, no zlib header, as
/// pydicom's `zlib.decompress(data, -MAX_WBITS)` and dicom-object read it).
fn inflate(deflated: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    DeflateDecoder::new(deflated)
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot inflate the deflated data set: {e}"))?;
    if out.len() as u64 > MAX_INFLATED {
        return Err(format!("deflated data set inflates to more than {MAX_INFLATED} bytes"));
    }
    Ok(out)
}

/// Whether the standard dictionary types `(group, elem)` as a sequence.
fn dictionary_says_sequence(group: u16, elem: u16) -> bool {
    StandardDataDictionary.by_tag(Tag(group, elem)).is_some_and(|e| e.vr() == VirtualVr::Exact(VR::SQ))
}

/// VRs whose explicit-VR length field is 16 bits (PS3.5 Table 7.1-2).
fn is_short_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SS"
            | b"ST"
            | b"TM"
            | b"UI"
            | b"UL"
            | b"US"
    )
}

/// Whether dicom-core knows these two bytes as a VR; other bytes are read as UN.
fn is_known_vr(vr: &[u8]) -> bool {
    matches!(vr, [a, b] if VR::from_binary([*a, *b]).is_some())
}

struct Walker<'a> {
    /// The bytes at hand: the whole file, or a prefix of it.
    b: &'a [u8],
    /// The file's length; above `b.len()` when `b` is a prefix.
    total: usize,
    big: bool,
    explicit: bool,
    depth: u32,
    ts: Option<String>,
    pixel_data: bool,
    /// Stop at the top-level PixelData element instead of walking past it.
    header_only: bool,
    /// The walk failed only because the prefix ran out.
    need_more: Cell<bool>,
}

impl<'a> Walker<'a> {
    fn new(b: &'a [u8], total: usize, header_only: bool) -> Self {
        Walker {
            b,
            total,
            big: false,
            explicit: true,
            depth: 0,
            ts: None,
            pixel_data: false,
            header_only,
            need_more: Cell::new(false),
        }
    }

    /// Whether bytes up to `end` lie in the file but beyond the prefix (then
    /// the walk asks for more instead of calling the file corrupt).
    fn beyond_prefix(&self, end: usize) -> bool {
        let beyond = end > self.b.len() && self.b.len() < self.total;
        if beyond {
            self.need_more.set(true);
        }
        beyond
    }

    /// [`Self::beyond_prefix`] for a value ending at `end`, which must lie inside the file.
    fn beyond_prefix_within_file(&self, end: usize) {
        if end <= self.total {
            self.beyond_prefix(end);
        }
    }

    fn u16_at(&self, p: usize) -> Option<u16> {
        let s: [u8; 2] = self.b.get(p..p.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big { u16::from_be_bytes(s) } else { u16::from_le_bytes(s) })
    }

    fn u32_at(&self, p: usize) -> Option<u32> {
        let s: [u8; 4] = self.b.get(p..p.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big { u32::from_be_bytes(s) } else { u32::from_le_bytes(s) })
    }

    fn short(&self, p: usize) -> String {
        self.beyond_prefix(p.saturating_add(12));
        format!("file ends inside the element header at byte {p}")
    }

    /// Elements until `end` (or an item delimiter); returns the position after.
    fn dataset(&mut self, mut pos: usize, end: usize) -> Result<usize, String> {
        while pos < end {
            if pos + 8 > self.b.len() {
                if self.beyond_prefix(pos + 8) {
                    return Err(self.short(pos));
                }
                // Trailing padding shorter than a header: left to the parser.
                return Ok(self.b.len());
            }
            if self.u16_at(pos) == Some(0xFFFE) {
                if self.depth > 0 {
                    // Item delimitation ends an undefined-length item.
                    return Ok(pos + 8);
                }
                // Outside any sequence the parser reads an 8-byte item header and goes
                // on: the walk goes on too, rather than leave the rest unchecked.
                let len = self.u32_at(pos + 4).ok_or_else(|| self.short(pos))?;
                if len != UNDEFINED {
                    self.bounded(pos + 8, len)?;
                }
                pos += 8;
                continue;
            }
            pos = self.element(pos, false)?;
        }
        Ok(pos)
    }

    /// One element header at `pos`; descends into sequences; returns the position after it.
    fn element(&mut self, pos: usize, meta: bool) -> Result<usize, String> {
        let (group, elem) = (self.u16_at(pos).ok_or_else(|| self.short(pos))?, self.u16_at(pos + 2).unwrap_or(0));
        let explicit = self.explicit || meta;
        let vr = self.b.get(pos + 4..pos + 6).unwrap_or(b"\0\0");
        let (len, start) = if explicit {
            // Exactly dicom-encoding's rule (PS3.5 Table 7.1-2): these VRs have a
            // 16-bit length, every other one, unknown VR bytes included (read as
            // UN), a 32-bit length after two reserved bytes.
            if is_short_vr(vr) {
                (u32::from(self.u16_at(pos + 6).ok_or_else(|| self.short(pos))?), pos + 8)
            } else {
                (self.u32_at(pos + 8).ok_or_else(|| self.short(pos))?, pos + 12)
            }
        } else {
            (self.u32_at(pos + 4).ok_or_else(|| self.short(pos))?, pos + 8)
        };
        if self.depth == 0 && (group, elem) == (0x7FE0, 0x0010) {
            self.pixel_data = true;
            if self.header_only {
                // The value is not read here: its length must fit in the file,
                // and the walk ends (`usize::MAX` ends every loop above).
                if len != UNDEFINED && start.saturating_add(len as usize) > self.total {
                    return Err(format!(
                        "element (7FE0,0010) declares {len} bytes but only {} remain",
                        self.total.saturating_sub(start)
                    ));
                }
                return Ok(usize::MAX);
            }
        }
        // Implicit VR: dicom-parser takes the VR from the standard dictionary, and
        // reads a tag the dictionary types SQ as a sequence whatever its bytes hold;
        // the walk must descend into it too, or the lengths inside go unchecked.
        let is_sq = if explicit { vr == b"SQ" } else { dictionary_says_sequence(group, elem) };
        let is_un = explicit && (vr == b"UN" || !is_known_vr(vr));
        if len == UNDEFINED {
            return if is_sq || !explicit {
                self.nested(|w| w.sequence(start, None))
            } else if is_un {
                // PS3.5 §6.2.2: an undefined-length UN is an implicit-VR sequence.
                let saved = self.explicit;
                self.explicit = false;
                let r = self.nested(|w| w.sequence(start, None));
                self.explicit = saved;
                r
            } else {
                self.fragments(start)
            };
        }
        let len = len as usize;
        let end = start.checked_add(len).filter(|&e| e <= self.b.len()).ok_or_else(|| {
            self.beyond_prefix_within_file(start.saturating_add(len));
            format!(
                "element ({group:04X},{elem:04X}) declares {len} bytes but only {} remain",
                self.total.saturating_sub(start)
            )
        })?;
        if meta && (group, elem) == (0x0002, 0x0010) {
            let raw = self.b.get(start..end).unwrap_or_default();
            self.ts = Some(String::from_utf8_lossy(raw).trim_end_matches(['\0', ' ']).to_string());
        }
        // Implicit VR hides the VR of a sequence: its first item tag gives it away.
        let looks_like_items = len >= 8 && self.b.get(start..start + 4) == Some(self.item_tag().as_slice());
        if is_sq || ((!explicit || is_un) && looks_like_items) {
            self.nested(|w| w.sequence(start, Some(end)))?;
        }
        Ok(end)
    }

    fn item_tag(&self) -> [u8; 4] {
        if self.big { [0xFF, 0xFE, 0xE0, 0x00] } else { [0xFE, 0xFF, 0x00, 0xE0] }
    }

    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Result<usize, String>) -> Result<usize, String> {
        if self.depth >= MAX_DEPTH {
            return Err(format!("sequences nested deeper than {MAX_DEPTH} levels"));
        }
        self.depth += 1;
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// Items of a sequence until `end` or the sequence delimiter.
    fn sequence(&mut self, mut pos: usize, end: Option<usize>) -> Result<usize, String> {
        loop {
            if end.is_some_and(|e| pos >= e) {
                return Ok(pos);
            }
            let (g, e, len) = self.item_header(pos)?;
            match (g, e) {
                (0xFFFE, 0xE0DD) => return Ok(pos + 8),
                (0xFFFE, 0xE000) if len == UNDEFINED => pos = self.dataset(pos + 8, self.b.len())?,
                (0xFFFE, 0xE000) => {
                    let item_end = self.bounded(pos + 8, len)?;
                    self.dataset(pos + 8, item_end)?;
                    pos = item_end;
                }
                _ => return Err(format!("unexpected element ({g:04X},{e:04X}) inside a sequence")),
            }
        }
    }

    /// Encapsulated pixel data fragments: blobs until the sequence delimiter.
    fn fragments(&mut self, mut pos: usize) -> Result<usize, String> {
        loop {
            let (g, e, len) = self.item_header(pos)?;
            match (g, e) {
                (0xFFFE, 0xE0DD) => return Ok(pos + 8),
                (0xFFFE, 0xE000) if len != UNDEFINED => pos = self.bounded(pos + 8, len)?,
                _ => return Err(format!("unexpected element ({g:04X},{e:04X}) among pixel data fragments")),
            }
        }
    }

    fn item_header(&self, pos: usize) -> Result<(u16, u16, u32), String> {
        match (self.u16_at(pos), self.u16_at(pos + 2), self.u32_at(pos + 4)) {
            (Some(g), Some(e), Some(l)) => Ok((g, e, l)),
            _ => {
                self.beyond_prefix(pos + 8);
                Err(format!("file ends inside a sequence at byte {pos}"))
            }
        }
    }

    fn bounded(&self, start: usize, len: u32) -> Result<usize, String> {
        start.checked_add(len as usize).filter(|&e| e <= self.b.len()).ok_or_else(|| {
            self.beyond_prefix_within_file(start.saturating_add(len as usize));
            format!("item declares {len} bytes but only {} remain", self.total.saturating_sub(start))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(ts: &str, body: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        let mut v = ts.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        b.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        b.extend_from_slice(&(v.len() as u16).to_le_bytes());
        b.extend_from_slice(&v);
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn a_length_past_the_end_is_refused_before_parsing() {
        // (0008,103E) LO with 4 bytes, then (7FE0,0010) OW claiming 2 GiB.
        let mut body = vec![0x08, 0x00, 0x3E, 0x10, b'L', b'O', 4, 0, b'T', b'1', b' ', b' '];
        body.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
        body.extend_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        let err = check_lengths(&file("1.2.840.10008.1.2.1", &body)).unwrap_err();
        assert!(err.contains("(7FE0,0010)") && err.contains("2147483632"), "{err}");
        body.truncate(12);
        let ok = check_lengths(&file("1.2.840.10008.1.2.1", &body)).expect("valid");
        assert_eq!(ok, Checked { transfer_syntax: "1.2.840.10008.1.2.1".to_string(), has_pixel_data: false });
    }

    #[test]
    fn a_header_walk_stops_at_the_pixel_data_and_asks_for_more_when_the_prefix_ends() {
        // (0008,103E) LO "T1", a private OB of 1000 bytes, then PixelData of 5000 bytes.
        let mut body = vec![0x08, 0x00, 0x3E, 0x10, b'L', b'O', 2, 0, b'T', b'1'];
        body.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
        body.extend_from_slice(&1000u32.to_le_bytes());
        body.extend_from_slice(&[0u8; 1000]);
        body.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
        body.extend_from_slice(&5000u32.to_le_bytes());
        let header = file("1.2.840.10008.1.2.1", &body);
        let whole = header.len() + 5000;
        let done = Checked { transfer_syntax: "1.2.840.10008.1.2.1".to_string(), has_pixel_data: true };
        // The header alone is enough; the 5000 bytes of pixels are never looked at.
        assert_eq!(check_header(&header, whole), Ok(HeaderWalk::Done(done)));
        // Cut inside the private element, or inside the next element header: more is needed.
        for cut in [header.len() - 600, header.len() - 6] {
            assert_eq!(check_header(&header[..cut], whole), Ok(HeaderWalk::NeedMore), "cut at {cut}");
        }
        // Pixel data longer than the file, or an element past the file's end: corrupt, not "more".
        let err = check_header(&header, whole - 1).unwrap_err();
        assert!(err.contains("(7FE0,0010) declares 5000"), "{err}");
        let err = check_header(&header[..header.len() - 600], header.len() - 600).unwrap_err();
        assert!(err.contains("(0009,1010) declares 1000"), "{err}");
        // Deflated files are checked whole.
        assert_eq!(check_header(&file(DEFLATED, &[]), 1 << 20), Ok(HeaderWalk::Deflated));
    }

    #[test]
    fn implicit_sequences_are_walked_and_inner_lengths_checked() {
        // (0040,0275) with one defined-length item holding an element that claims 1000 bytes.
        let mut inner = vec![0x08, 0x00, 0x3E, 0x10];
        inner.extend_from_slice(&1000u32.to_le_bytes());
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        item.extend_from_slice(&inner);
        let mut body = vec![0x40, 0x00, 0x75, 0x02];
        body.extend_from_slice(&(item.len() as u32).to_le_bytes());
        body.extend_from_slice(&item);
        let err = check_lengths(&file(IMPLICIT_LE, &body)).unwrap_err();
        assert!(err.contains("(0008,103E) declares 1000"), "{err}");
        assert!(check_lengths(&file(IMPLICIT_LE, &[])).is_ok());
    }

    #[test]
    fn implicit_tags_the_dictionary_types_sq_are_walked_as_sequences() {
        // (0008,1140) ReferencedImageSequence, defined length, whose bytes are not
        // items: dicom-parser reads it as a sequence (and its bogus "item" length),
        // so the walk must refuse it rather than skip it as an opaque value.
        let mut bogus = vec![0x08, 0x00, 0x3E, 0x10];
        bogus.extend_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        bogus.extend_from_slice(&[0u8; 8]);
        let mut body = vec![0x08, 0x00, 0x40, 0x11];
        body.extend_from_slice(&(bogus.len() as u32).to_le_bytes());
        body.extend_from_slice(&bogus);
        let err = check_lengths(&file(IMPLICIT_LE, &body)).unwrap_err();
        assert!(err.contains("inside a sequence"), "{err}");
        // The same bytes under a tag the dictionary does not type SQ, (0008,103E)
        // SeriesDescription, are an opaque value that fits in the file.
        body[2..4].copy_from_slice(&[0x3E, 0x10]);
        assert!(check_lengths(&file(IMPLICIT_LE, &body)).is_ok());
        // An empty sequence is fine.
        let empty = [0x08, 0x00, 0x40, 0x11, 0, 0, 0, 0];
        assert!(check_lengths(&file(IMPLICIT_LE, &empty)).is_ok());
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).expect("in memory");
        enc.finish().expect("in memory")
    }

    // Found while fuzzing (fuzz/fuzz_targets/dicom_file.rs): deflated files
    // skipped the walk, and one declared length made the parser reserve GiBs.
    #[test]
    fn deflated_data_sets_are_inflated_and_walked() {
        let mut bad = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];
        bad.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let err = check_lengths(&file(DEFLATED, &deflate(&bad))).unwrap_err();
        assert!(err.contains("(7FE0,0010) declares 4294967280"), "{err}");
        let err = check_lengths(&file(DEFLATED, b"not deflate data")).unwrap_err();
        assert!(err.contains("cannot inflate"), "{err}");
        let good = [0x08, 0x00, 0x3E, 0x10, b'L', b'O', 2, 0, b'T', b'1', 0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];
        let mut good = good.to_vec();
        good.extend_from_slice(&2u32.to_le_bytes());
        good.extend_from_slice(&[7, 0]);
        let ok = check_lengths(&file(DEFLATED, &deflate(&good))).expect("valid");
        assert_eq!(ok, Checked { transfer_syntax: DEFLATED.to_string(), has_pixel_data: true });
    }

    // Found while fuzzing (fuzz/fuzz_targets/dicom_file.rs): the walk read an
    // unknown VR with a 16-bit length where dicom-encoding reads UN with a
    // 32-bit one, so a 1.5 KB file made the parser reserve 3.5 GB.
    #[test]
    fn unknown_vrs_have_32_bit_lengths_as_in_the_parser() {
        // (0009,0010) with VR bytes "\0\0", reserved 0000, then a 32-bit length of 3.5 GB.
        let mut body = vec![0x09, 0x00, 0x10, 0x00, 0, 0, 0, 0];
        body.extend_from_slice(&3_570_717_696u32.to_le_bytes());
        let err = check_lengths(&file("1.2.840.10008.1.2.1", &body)).unwrap_err();
        assert!(err.contains("(0009,0010) declares 3570717696"), "{err}");
        // An item header outside any sequence does not end the walk.
        let mut body = vec![0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0, 0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];
        body.extend_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        let err = check_lengths(&file("1.2.840.10008.1.2.1", &body)).unwrap_err();
        assert!(err.contains("(7FE0,0010)"), "{err}");
    }

    // Found while fuzzing: a meta group whose last element is off-group (here
    // (0003,0013)) ended the walk's meta early, while the parser, counting
    // (0002,0000), starts the data set after it: a deflated set was inflated
    // from the wrong byte and its lengths never checked.
    #[test]
    fn the_data_set_starts_where_the_meta_group_length_says() {
        let mut b = vec![0u8; 128];
        b.extend_from_slice(b"DICM");
        let ts = b"1.2.840.10008.1.2.1.99\0\0";
        let mut meta = vec![0x02, 0x00, 0x10, 0x00, b'U', b'I', ts.len() as u8, 0];
        meta.extend_from_slice(ts);
        meta.extend_from_slice(&[0x03, 0x00, 0x13, 0x00, b'S', b'H', 4, 0, b'X', b'Y', b'Z', b' ']);
        b.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        b.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        b.extend_from_slice(&meta);
        let mut body = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];
        body.extend_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        b.extend_from_slice(&deflate(&body));
        let err = check_lengths(&b).unwrap_err();
        assert!(err.contains("(7FE0,0010) declares 2147483632"), "{err}");
    }

    proptest::proptest! {
        // Arbitrary bytes after a valid meta group, in every encoding: a verdict, never a panic or a hang.
        #[test]
        fn arbitrary_data_sets_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..512), ts in 0usize..5) {
            let uid = ["1.2.840.10008.1.2.1", IMPLICIT_LE, EXPLICIT_BE, "1.2.840.10008.1.2.4.90", DEFLATED][ts];
            let _ = check_lengths(&file(uid, &body));
        }
    }
}
