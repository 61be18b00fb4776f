//! Domain types shared by the scheduler, the workers and the job store:
//! job and review states, priorities, the job key that makes submissions
//! idempotent, and the pipeline spec jobs are keyed with. No I/O here.

mod key;
mod pipeline;
mod states;

pub use key::{JOB_KEY_VERSION, JobKey, JobKeyInput, KeyError, StudyIdentity};
pub use pipeline::{PipelineLabel, PipelineSpec};
pub use states::{JobState, Priority, ReviewAction, ReviewState, Role, UnknownValue};
