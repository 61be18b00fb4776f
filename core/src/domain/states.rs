//! Job states, review states and priorities, with the text they are stored
//! and sent as (lowercase words; priorities are also stored as a rank so that
//! `ORDER BY priority` puts stat work first).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A text that names no state or priority.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} \"{value}\"")]
pub struct UnknownValue {
    pub kind: &'static str,
    pub value: String,
}

/// Where a job is: `queued → running → succeeded | failed`, `running → queued`
/// (transient failure or expired lease, while attempts remain) and `→ dead`
/// (attempts exhausted). `succeeded`, `failed` and `dead` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    /// A permanent error (corrupt input, unsupported format): not retried.
    Failed,
    /// Transient errors or lost workers on every allowed attempt.
    Dead,
}

/// A review item: `pending → claimed (lease) → decided`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewState {
    Pending,
    Claimed,
    Decided,
}

/// Stat work goes at once; routine work waits for the nightly window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Stat,
    #[default]
    Routine,
}

macro_rules! text_enum {
    ($ty:ty, $kind:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$(<$ty>::$variant),+];

            /// The stored and serialized text.
            pub fn as_str(self) -> &'static str {
                match self { $(<$ty>::$variant => $text),+ }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok(<$ty>::$variant),)+
                    _ => Err(UnknownValue { kind: $kind, value: s.to_string() }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// What an API token may do: `reviewer` works the review queue, `admin`
/// also sees and retries jobs, `service` only submits studies (PACS hooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reviewer,
    Admin,
    Service,
}

/// A reviewer's decision on a case. `escalate` returns the case to the
/// queue, first in line, for a senior reviewer; the others close it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReviewAction {
    /// The result is right as it is.
    Approve,
    /// The scan or result is not usable.
    Reject,
    /// A corrected mask was uploaded and replaces the result.
    Correct,
    Escalate,
}

text_enum!(Role, "role", { Reviewer => "reviewer", Admin => "admin", Service => "service" });
text_enum!(ReviewAction, "review action", { Approve => "approve", Reject => "reject", Correct => "correct", Escalate => "escalate" });
text_enum!(JobState, "job state", { Queued => "queued", Running => "running", Succeeded => "succeeded", Failed => "failed", Dead => "dead" });
text_enum!(ReviewState, "review state", { Pending => "pending", Claimed => "claimed", Decided => "decided" });
text_enum!(Priority, "priority", { Stat => "stat", Routine => "routine" });

impl JobState {
    /// No transition leaves a final state.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Dead)
    }
}

impl Priority {
    /// The stored rank: lower goes first (stat 0, routine 1).
    pub fn rank(self) -> i64 {
        match self {
            Priority::Stat => 0,
            Priority::Routine => 1,
        }
    }

    pub fn from_rank(rank: i64) -> Result<Self, UnknownValue> {
        match rank {
            0 => Ok(Priority::Stat),
            1 => Ok(Priority::Routine),
            _ => Err(UnknownValue { kind: "priority rank", value: rank.to_string() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_and_matches_serde() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>(), Ok(*s));
            assert_eq!(serde_json::to_string(s).unwrap_or_default(), format!("\"{s}\""));
        }
        for s in ReviewState::ALL {
            assert_eq!(s.as_str().parse::<ReviewState>(), Ok(*s));
            assert_eq!(serde_json::to_string(s).unwrap_or_default(), format!("\"{s}\""));
        }
        for p in Priority::ALL {
            assert_eq!(p.as_str().parse::<Priority>(), Ok(*p));
            assert_eq!(Priority::from_rank(p.rank()), Ok(*p));
        }
        assert_eq!(
            "Queued".parse::<JobState>(),
            Err(UnknownValue { kind: "job state", value: "Queued".into() }),
            "stored text is exact lowercase"
        );
        assert!(Priority::from_rank(2).is_err());
    }

    #[test]
    fn stat_sorts_before_routine_by_rank_and_by_ord() {
        assert!(Priority::Stat.rank() < Priority::Routine.rank());
        assert!(Priority::Stat < Priority::Routine);
    }

    #[test]
    fn only_succeeded_failed_and_dead_are_final() {
        let finals: Vec<JobState> = JobState::ALL.iter().copied().filter(|s| s.is_final()).collect();
        assert_eq!(finals, vec![JobState::Succeeded, JobState::Failed, JobState::Dead]);
    }
}
