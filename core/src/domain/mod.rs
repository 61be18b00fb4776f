//! Domain types shared by the scheduler, the workers and the job store:
//! job and review states, priorities, and the job key that makes
//! submissions idempotent. No I/O here.

mod key;
mod states;

pub use key::{JOB_KEY_VERSION, JobKey, JobKeyInput, KeyError, StudyIdentity};
pub use states::{JobState, Priority, ReviewAction, ReviewState, Role, UnknownValue};
