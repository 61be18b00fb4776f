"""Checks neurobatch's DICOM results (a SEG and a TID 1500 SR) with the tools the field trusts.

    check_results.py --seg seg.dcm --sr sr.dcm --mask mask.nii.gz

Prints one JSON object:
  seg:      read back with highdicom (segread, get_volume): each segment's voxels, placed in world
            coordinates through the SEG's own geometry and compared with mask.nii.gz (nibabel) at
            the same world position (`mismatched` must be 0, `compared` covers every mask voxel
            of the segment)
  sr:       read with highdicom (srread, MeasurementReport): every measurement group's tracking
            identifier, finding, referenced segment and measured values
  dciodvfy: the errors and warnings of dicom3tools' IOD validator for each file

Used by the Rust tests (imaging/tests/derived.rs, the daemon's DICOM round trip); needs
.venv (highdicom, nibabel) and dciodvfy (Debian dicom3tools), both installed by scripts/setup.sh.
"""

import argparse
import json
import subprocess

import highdicom as hd
import nibabel as nib
import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def check_seg(seg_path, mask_path):
    seg = hd.seg.segread(seg_path)
    mask_img = nib.load(mask_path)
    mask = np.asarray(mask_img.dataobj).astype(np.int64)
    ras_to_mask = np.linalg.inv(mask_img.affine)
    segments = []
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        label = str(item.SegmentLabel)
        prop = item.SegmentedPropertyTypeCodeSequence[0]
        cat = item.SegmentedPropertyCategoryCodeSequence[0]
        segments.append(
            {
                "number": number,
                "label": label,
                "category": [cat.CodeValue, cat.CodingSchemeDesignator, cat.CodeMeaning],
                "type": [prop.CodeValue, prop.CodingSchemeDesignator, prop.CodeMeaning],
            }
        )
    out = {"frames": int(seg.NumberOfFrames), "segments": segments, "per_segment": {}}
    # Segment number -> label value in the mask: the SEG's segment order is the manifest's label order.
    labels = sorted(int(v) for v in np.unique(mask) if v != 0)
    volume = seg.get_volume(combine_segments=False)
    array = np.asarray(volume.array)  # (slices, rows, columns, segments)
    affine = np.asarray(volume.affine)  # volume indices -> LPS mm
    idx = np.indices(array.shape[:3]).reshape(3, -1)
    world = LPS_TO_RAS @ affine @ np.vstack([idx, np.ones(idx.shape[1])])
    vox = ras_to_mask @ world
    rounded = np.rint(vox[:3]).astype(np.int64)
    off_grid = float(np.abs(vox[:3] - rounded).max())
    inside = np.all((rounded >= 0) & (rounded < np.array(mask.shape)[:, None]), axis=0)
    for n, s in enumerate(segments):
        value = labels[n] if n < len(labels) else None
        seg_bits = array[..., n].reshape(-1).astype(bool)
        truth = np.zeros_like(seg_bits)
        if value is not None:
            truth[inside] = mask[rounded[0, inside], rounded[1, inside], rounded[2, inside]] == value
        mask_count = int((mask == value).sum()) if value is not None else 0
        out["per_segment"][s["label"]] = {
            "mask_value": value,
            "seg_voxels": int(seg_bits.sum()),
            "mask_voxels": mask_count,
            "compared": int(truth.sum()),
            "mismatched": int((seg_bits != truth).sum()),
            "outside_mask_grid": int((seg_bits & ~inside).sum()),
        }
    out["max_off_grid_voxels"] = off_grid
    return out


def check_sr(sr_path):
    sr = hd.sr.srread(sr_path)
    report = sr.content
    if not isinstance(report, hd.sr.MeasurementReport):
        raise SystemExit(f"{sr_path}: not read as a TID 1500 measurement report")
    groups = []
    for group in report.get_volumetric_roi_measurement_groups():
        seg_ref = group.referenced_segment
        groups.append(
            {
                "tracking_id": group.tracking_identifier,
                "tracking_uid": group.tracking_uid,
                "finding": group.finding_type.meaning if group.finding_type else None,
                "segment": int(seg_ref[0].ReferencedSOPSequence[0].ReferencedSegmentNumber) if seg_ref else None,
                "measurements": {m.name.meaning: float(m.value) for m in group.get_measurements()},
            }
        )
    study = []
    for group in report.get_image_measurement_groups():
        study.append(
            {
                "tracking_id": group.tracking_identifier,
                "measurements": {m.name.meaning: float(m.value) for m in group.get_measurements()},
            }
        )
    return {"volumetric_groups": groups, "other_groups": study, "title": sr.ConceptNameCodeSequence[0].CodeMeaning}


def dciodvfy(path):
    run = subprocess.run(["dciodvfy", "-new", path], capture_output=True, text=True)
    lines = (run.stdout + run.stderr).splitlines()
    return {
        "errors": [l for l in lines if l.startswith("Error")],
        "warnings": [l for l in lines if l.startswith("Warning")],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seg", required=True)
    ap.add_argument("--sr")
    ap.add_argument("--mask", required=True)
    a = ap.parse_args()
    out = {"seg": check_seg(a.seg, a.mask), "dciodvfy": {"seg": dciodvfy(a.seg)}}
    if a.sr:
        out["sr"] = check_sr(a.sr)
        out["dciodvfy"]["sr"] = dciodvfy(a.sr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
