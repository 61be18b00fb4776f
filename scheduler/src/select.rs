//! Series selection: which DICOM stacks of a study the `[pipeline]` rules
//! accept (modality, series-description regex, fewest slices, slice
//! orientation), the one a job processes, and why the others were refused.
//! Pure: it sees candidates, not files.

use neurobatch_core::config::PipelineConfig;
use regex::Regex;

use crate::SchedulerError;

/// The slice orientation, by the largest component of the slice normal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    Sagittal,
    Coronal,
    Axial,
}

impl Orientation {
    /// The plane a slice lies in, from its normal (row cosine × column cosine):
    /// x (left–right) is sagittal, y (anterior–posterior) coronal, z axial.
    pub fn from_normal(n: [f64; 3]) -> Option<Orientation> {
        let a = n.map(f64::abs);
        if !a.iter().all(|v| v.is_finite()) || a.iter().all(|v| *v == 0.0) {
            return None;
        }
        Some(if a[0] >= a[1] && a[0] >= a[2] {
            Orientation::Sagittal
        } else if a[1] >= a[2] {
            Orientation::Coronal
        } else {
            Orientation::Axial
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Orientation::Sagittal => "sagittal",
            Orientation::Coronal => "coronal",
            Orientation::Axial => "axial",
        }
    }
}

/// What selection looks at in one stack.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub series_uid: String,
    pub modality: Option<String>,
    pub description: Option<String>,
    pub slices: usize,
    pub orientation: Option<Orientation>,
}

/// The `[pipeline]` selection rules, compiled.
#[derive(Debug, Clone)]
pub struct Rules {
    modalities: Vec<String>,
    description: Option<Regex>,
    min_slices: usize,
    orientations: Vec<String>,
}

/// The outcome of selection: the chosen candidate's index, or none, and one
/// line per refused candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub chosen: Option<usize>,
    pub refused: Vec<String>,
}

impl Rules {
    /// Compiles the rules; the description regex is used as written (case-sensitive unless it says `(?i)`).
    pub fn new(p: &PipelineConfig) -> Result<Rules, SchedulerError> {
        let description = match p.series_description.trim() {
            "" => None,
            text => Some(Regex::new(text).map_err(|e| SchedulerError::Config {
                key: "pipeline.series_description",
                reason: format!("not a valid regular expression: {}", one_line(&e.to_string())),
            })?),
        };
        for o in &p.orientations {
            if !matches!(o.as_str(), "axial" | "coronal" | "sagittal") {
                return Err(SchedulerError::Config {
                    key: "pipeline.orientations",
                    reason: format!("\"{o}\" is not axial, coronal or sagittal"),
                });
            }
        }
        Ok(Rules {
            modalities: p.modalities.iter().map(|m| m.trim().to_ascii_uppercase()).collect(),
            description,
            min_slices: usize::try_from(p.min_slices).unwrap_or(usize::MAX),
            orientations: p.orientations.clone(),
        })
    }

    /// Why the rules refuse `c`; empty when it is eligible.
    pub fn refusals(&self, c: &Candidate) -> Vec<String> {
        let mut why = Vec::new();
        if !self.modalities.is_empty() {
            let m = c.modality.as_deref().map(|m| m.trim().to_ascii_uppercase());
            if !m.as_ref().is_some_and(|m| self.modalities.contains(m)) {
                why.push(format!(
                    "modality {} is not one of {}",
                    m.as_deref().unwrap_or("(none)"),
                    self.modalities.join(", ")
                ));
            }
        }
        if let Some(re) = &self.description {
            let d = c.description.as_deref().unwrap_or("");
            if !re.is_match(d) {
                why.push(format!("description \"{d}\" does not match /{}/", re.as_str()));
            }
        }
        if c.slices < self.min_slices {
            why.push(format!("{} slices, fewer than {}", c.slices, self.min_slices));
        }
        if !self.orientations.is_empty() {
            match c.orientation {
                Some(o) if self.orientations.iter().any(|w| w == o.as_str()) => {}
                Some(o) => {
                    why.push(format!("orientation {} is not one of {}", o.as_str(), self.orientations.join(", ")))
                }
                None => why.push("no slice orientation (ImageOrientationPatient)".to_string()),
            }
        }
        why
    }

    /// The series worth retrieving when only what a query tells is known
    /// (modality, description, instance count as `slices`, no orientation):
    /// the one [`select`](Self::select) would choose, or — when orientations
    /// are configured, which only the images tell — every series the other
    /// rules accept (the staging of the retrieved study makes the final choice).
    pub fn worth_retrieving(&self, candidates: &[Candidate]) -> Vec<usize> {
        let unoriented = Rules { orientations: Vec::new(), ..self.clone() };
        if self.orientations.is_empty() {
            return unoriented.select(candidates).chosen.into_iter().collect();
        }
        (0..candidates.len()).filter(|&i| unoriented.refusals(&candidates[i]).is_empty()).collect()
    }

    /// Picks ONE stack: among the eligible ones the one with the most slices,
    /// ties broken by the lowest SeriesInstanceUID (then the first found), so
    /// the choice does not depend on file order.
    pub fn select(&self, candidates: &[Candidate]) -> Selection {
        let mut chosen: Option<usize> = None;
        let mut refused = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            let why = self.refusals(c);
            if why.is_empty() {
                let better = match chosen.and_then(|j| candidates.get(j)) {
                    None => true,
                    Some(b) => c.slices > b.slices || (c.slices == b.slices && c.series_uid < b.series_uid),
                };
                if better {
                    chosen = Some(i);
                }
            } else {
                let desc = c.description.as_deref().map(|d| format!(" \"{d}\"")).unwrap_or_default();
                refused.push(format!("series {}{desc}: {}", c.series_uid, why.join("; ")));
            }
        }
        Selection { chosen, refused }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_retrieval_the_best_series_or_every_one_whose_orientation_is_unknown() {
        let mut p = neurobatch_core::config::PipelineConfig {
            modalities: vec!["MR".into()],
            min_slices: 10,
            ..Default::default()
        };
        let unknown = |uid: &str, modality: &str, slices: usize| Candidate {
            series_uid: uid.into(),
            modality: Some(modality.into()),
            description: None,
            slices,
            orientation: None,
        };
        let found =
            [unknown("1.1", "MR", 40), unknown("1.2", "MR", 176), unknown("1.3", "CT", 300), unknown("1.4", "MR", 5)];
        let rules = |p: &neurobatch_core::config::PipelineConfig| Rules::new(p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rules(&p).worth_retrieving(&found), vec![1], "the largest eligible series");
        p.orientations = vec!["axial".into()];
        assert_eq!(
            rules(&p).worth_retrieving(&found),
            vec![0, 1],
            "every eligible MR series: orientation is not known yet"
        );
    }

    fn cand(uid: &str, modality: &str, desc: &str, slices: usize, o: Orientation) -> Candidate {
        Candidate {
            series_uid: uid.into(),
            modality: Some(modality.into()),
            description: Some(desc.into()),
            slices,
            orientation: Some(o),
        }
    }

    fn rules(edit: impl FnOnce(&mut PipelineConfig)) -> Rules {
        let mut p = PipelineConfig::default();
        edit(&mut p);
        Rules::new(&p).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn orientation_is_the_largest_normal_component() {
        assert_eq!(Orientation::from_normal([0.0, 0.0, 1.0]), Some(Orientation::Axial));
        assert_eq!(Orientation::from_normal([0.0, -0.9, 0.3]), Some(Orientation::Coronal));
        assert_eq!(Orientation::from_normal([-1.0, 0.1, 0.0]), Some(Orientation::Sagittal));
        // 17° tilt about x of an axial stack stays axial.
        let t = 17f64.to_radians();
        assert_eq!(Orientation::from_normal([0.0, -t.sin(), t.cos()]), Some(Orientation::Axial));
        assert_eq!(Orientation::from_normal([0.0, 0.0, 0.0]), None);
        assert_eq!(Orientation::from_normal([f64::NAN, 0.0, 1.0]), None);
    }

    #[test]
    fn the_most_slices_wins_and_ties_go_to_the_lowest_uid() {
        let r = rules(|_| {});
        let cs = [
            cand("1.2.9", "MR", "T1", 40, Orientation::Axial),
            cand("1.2.10", "MR", "T1", 40, Orientation::Axial),
            cand("1.2.3", "MR", "T1", 20, Orientation::Axial),
        ];
        // "1.2.10" < "1.2.9" as text: the documented tie-break is on the UID text.
        assert_eq!(r.select(&cs), Selection { chosen: Some(1), refused: vec![] });
        let cs = [cand("1.2.3", "MR", "T1", 20, Orientation::Axial), cand("1.2.4", "MR", "T1", 21, Orientation::Axial)];
        assert_eq!(r.select(&cs).chosen, Some(1));
    }

    #[test]
    fn every_rule_refuses_with_its_reason() {
        let r = rules(|p| {
            p.modalities = vec!["MR".into()];
            p.series_description = "(?i)t1".into();
            p.min_slices = 30;
            p.orientations = vec!["axial".into()];
        });
        let cs = [
            cand("1", "CT", "T1 AX", 40, Orientation::Axial),
            cand("2", "MR", "FLAIR", 40, Orientation::Axial),
            cand("3", "MR", "t1 ax", 10, Orientation::Axial),
            cand("4", "MR", "T1 SAG", 40, Orientation::Sagittal),
            cand("5", "MR", "T1 AX", 30, Orientation::Axial),
        ];
        let s = r.select(&cs);
        assert_eq!(s.chosen, Some(4));
        assert_eq!(s.refused.len(), 4);
        assert!(s.refused[0].contains("modality CT is not one of MR"), "{:?}", s.refused);
        assert!(s.refused[1].contains("does not match /(?i)t1/"), "{:?}", s.refused);
        assert!(s.refused[2].contains("10 slices, fewer than 30"), "{:?}", s.refused);
        assert!(s.refused[3].contains("orientation sagittal is not one of axial"), "{:?}", s.refused);
    }

    #[test]
    fn the_description_rule_is_case_sensitive_as_written() {
        let r = rules(|p| p.series_description = "T1".into());
        assert!(r.refusals(&cand("1", "MR", "t1 mprage", 40, Orientation::Axial)).len() == 1);
        assert!(r.refusals(&cand("1", "MR", "T1 MPRAGE", 40, Orientation::Axial)).is_empty());
    }

    #[test]
    fn a_bad_regex_is_a_configuration_error() {
        let p = PipelineConfig { series_description: "T1(".into(), ..PipelineConfig::default() };
        let err = Rules::new(&p).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("pipeline.series_description"), "{err}");
    }
}
