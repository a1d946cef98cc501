//! The outcome rules: how a job ends, from what the guest said and what the
//! registry did while it ran. This table is the only place they live.
//!
//! Failed is final: the registry shows the user a failed request. So only the
//! guest's own verdict (it said `failed`, it trapped, it hit a limit) makes a
//! job Failed; when the registry or the network defeats the agent after its
//! retries, the job is released, and another attempt can succeed.
//!
//! | what happened | the job |
//! |---|---|
//! | the lock was lost (409 or 410 on any call made under it) | abandoned: nothing more is sent, the lock ends on its own |
//! | a registry call failed after its retries (5xx, 429, no answer, unreachable, token refused) during Initialize, a block, a commit or progress | released (cause: registry) |
//! | a camera answered 401 or 403 to the credentials the host added | released (cause: camera-auth); the guest is degraded and gets no jobs for a while ([`backoff`](super::backoff)) |
//! | the registry refused a file for what it holds (400: not a JPEG, a block that does not decrypt, ...) | Failed, with the registry's reason |
//! | the guest: `completed`, or discovery found devices | Completed |
//! | the guest: `partially-completed` | PartiallyCompleted |
//! | the guest: `unavailable` (e.g. the camera cannot be reached), or no guest serves the job now | released (cause: guest) |
//! | the guest: `unsupported` | cancelled |
//! | the guest: `failed`, a trap, a limit | Failed, with the reason |
//! | the registry refused the complete (400: a file of the lock got blocks but was refused, so it is not committed) | released (cause: refused) to abandon those files, locked again at once, and completed as Failed with the reason and no file; if that is refused too, cancelled with the reason; if another agent locked it meanwhile, it is theirs |
//! | the final call (complete, cancel) failed after its retries | released (cause: registry); if that fails too, the lock expires |
//! | the agent is shutting down | released (cause: shutdown) |
//! | the job's task panicked | released (cause: panic), or the lock left to expire |
//!
//! The first rows win: a registry fault decides before the guest's verdict,
//! because a guest that could not store its output reports a failure that is
//! not its own.
//!
//! Every released job waits before this agent locks it again (2 s, doubling
//! to 5 min; [`backoff`](super::backoff)), so no row makes a job cycle fast,
//! and a job whose result the registry refuses ends within its attempt.

use crate::client::RegistryError;
use crate::guest::JobOutcome;
use crate::protocol::CompletionState;

/// Why a job was released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseCause {
    /// The guest said `unavailable`, or no guest serves the job now.
    Guest,
    /// The registry or the network failed a call after its retries.
    Registry,
    /// The agent is stopping.
    Shutdown,
    /// The job's task panicked.
    Panic,
    /// A camera refused the credentials the host added (401/403).
    CameraAuth,
    /// Released to abandon files the registry refused, before completing
    /// the job as Failed under a new lock.
    Refused,
}

impl ReleaseCause {
    /// Every cause, in the order metrics list them.
    pub const ALL: [ReleaseCause; 6] = [
        ReleaseCause::Guest,
        ReleaseCause::Registry,
        ReleaseCause::Shutdown,
        ReleaseCause::Panic,
        ReleaseCause::CameraAuth,
        ReleaseCause::Refused,
    ];

    /// Its name in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            ReleaseCause::Guest => "guest",
            ReleaseCause::Registry => "registry",
            ReleaseCause::Shutdown => "shutdown",
            ReleaseCause::Panic => "panic",
            ReleaseCause::CameraAuth => "camera-auth",
            ReleaseCause::Refused => "refused",
        }
    }

    /// Its index in [`ReleaseCause::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What the agent does to end a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Complete the job in this state, with this message.
    Complete(CompletionState, Option<String>),
    /// Cancel it: it will never be done.
    Cancel(String),
    /// Release it for another attempt.
    Release(ReleaseCause, String),
    /// Send nothing more: the lock is gone.
    Abandon(String),
    /// Release to abandon the refused files, lock again, and complete as
    /// Failed with this reason and no file.
    FailWithoutFiles(String),
}

/// How a job ends, from the guest's outcome, whether a camera refused the
/// host's credentials, and the registry errors its calls met (after their
/// retries), oldest first.
pub fn decide(
    guest: &JobOutcome,
    camera_auth_refused: Option<&str>,
    faults: &[RegistryError],
) -> Ending {
    if let Some(lost) = faults
        .iter()
        .find(|error| matches!(error, RegistryError::LockLost(_) | RegistryError::Gone(_)))
    {
        return Ending::Abandon(lost.to_string());
    }
    if let Some(fault) = faults.iter().find(|error| is_infrastructure(error)) {
        return Ending::Release(ReleaseCause::Registry, fault.to_string());
    }
    if let Some(why) = camera_auth_refused {
        return Ending::Release(ReleaseCause::CameraAuth, why.to_string());
    }
    if let Some(refused) = faults.first() {
        return Ending::Complete(CompletionState::Failed, Some(refused.to_string()));
    }
    match guest {
        JobOutcome::Completed | JobOutcome::Discovered(_) => {
            Ending::Complete(CompletionState::Completed, None)
        }
        JobOutcome::PartiallyCompleted => {
            Ending::Complete(CompletionState::PartiallyCompleted, None)
        }
        JobOutcome::Unavailable(why) => Ending::Release(ReleaseCause::Guest, why.clone()),
        JobOutcome::Unsupported(why) => Ending::Cancel(why.clone()),
        JobOutcome::Failed(why) => Ending::Complete(CompletionState::Failed, Some(why.clone())),
    }
}

/// What to do when the final call `ended` (a complete or a cancel) itself
/// failed with `error`.
pub fn after_failed_ending(ended: &Ending, error: &RegistryError) -> Ending {
    match (ended, error) {
        (_, RegistryError::LockLost(_) | RegistryError::Gone(_)) => {
            Ending::Abandon(error.to_string())
        }
        (Ending::Complete(_, message), RegistryError::Rejected { status: 400, .. }) => {
            let why = match message {
                Some(message) => format!("{message} ({error})"),
                None => error.to_string(),
            };
            Ending::FailWithoutFiles(why)
        }
        (_, other) => Ending::Release(ReleaseCause::Registry, other.to_string()),
    }
}

/// Whether `error` is the registry's or the network's failure rather than a
/// verdict on what the job sent.
fn is_infrastructure(error: &RegistryError) -> bool {
    match error {
        RegistryError::Transient { .. }
        | RegistryError::Unreachable(_)
        | RegistryError::Unauthorized(_) => true,
        // A 5xx or 429 that is not transient does not exist; 404 (a job or
        // file the registry no longer knows) is its state, not the guest's doing.
        RegistryError::Rejected { status, .. } => *status == 404 || *status >= 500,
        RegistryError::LockLost(_) | RegistryError::Gone(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn transient() -> RegistryError {
        RegistryError::Transient {
            message: "PUT /files/f/blocks/b answered 503: injected fault".into(),
            retry_after: Some(Duration::from_secs(1)),
        }
    }

    fn refused() -> RegistryError {
        RegistryError::Rejected {
            status: 400,
            code: "BAD_REQUEST".into(),
            message: "the thumbnail is not a JPEG".into(),
        }
    }

    fn every_guest_outcome() -> Vec<JobOutcome> {
        vec![
            JobOutcome::Completed,
            JobOutcome::PartiallyCompleted,
            JobOutcome::Discovered(Vec::new()),
            JobOutcome::Unavailable("camera down".into()),
            JobOutcome::Unsupported("no such thing".into()),
            JobOutcome::Failed("cannot initialize upload: 503".into()),
        ]
    }

    #[test]
    fn a_lost_lock_abandons_the_job_whatever_the_guest_said() {
        for guest in every_guest_outcome() {
            let faults = [transient(), RegistryError::LockLost("409".into())];
            assert!(
                matches!(decide(&guest, None, &faults), Ending::Abandon(_)),
                "{guest:?}"
            );
            let gone = [RegistryError::Gone("410".into())];
            assert!(
                matches!(decide(&guest, None, &gone), Ending::Abandon(_)),
                "{guest:?}"
            );
        }
    }

    #[test]
    fn a_registry_fault_after_retries_releases_and_never_fails() {
        let faults = [
            transient(),
            RegistryError::Unreachable("connection refused".into()),
            RegistryError::Unauthorized("token endpoint answered 503".into()),
            RegistryError::Rejected {
                status: 404,
                code: "NOT_FOUND".into(),
                message: "no file".into(),
            },
        ];
        for guest in every_guest_outcome() {
            for fault in &faults {
                assert!(
                    matches!(
                        decide(&guest, None, std::slice::from_ref(fault)),
                        Ending::Release(ReleaseCause::Registry, _)
                    ),
                    "{guest:?} with {fault:?}"
                );
            }
        }
    }

    #[test]
    fn a_registry_fault_decides_before_a_refusal() {
        let ending = decide(&JobOutcome::Completed, None, &[refused(), transient()]);
        assert!(matches!(ending, Ending::Release(ReleaseCause::Registry, _)));
    }

    #[test]
    fn a_file_the_registry_refuses_fails_the_job_with_its_reason() {
        let ending = decide(
            &JobOutcome::Failed("write failed".into()),
            None,
            &[refused()],
        );
        assert_eq!(
            ending,
            Ending::Complete(
                CompletionState::Failed,
                Some("the registry refused: the thumbnail is not a JPEG".into())
            )
        );
    }

    #[test]
    fn completed_and_discovered_complete() {
        for guest in [JobOutcome::Completed, JobOutcome::Discovered(Vec::new())] {
            assert_eq!(
                decide(&guest, None, &[]),
                Ending::Complete(CompletionState::Completed, None)
            );
        }
    }

    #[test]
    fn partially_completed_completes_partially() {
        assert_eq!(
            decide(&JobOutcome::PartiallyCompleted, None, &[]),
            Ending::Complete(CompletionState::PartiallyCompleted, None)
        );
    }

    #[test]
    fn unavailable_releases_for_the_guest() {
        assert_eq!(
            decide(&JobOutcome::Unavailable("camera down".into()), None, &[]),
            Ending::Release(ReleaseCause::Guest, "camera down".into())
        );
    }

    #[test]
    fn unsupported_cancels() {
        assert_eq!(
            decide(&JobOutcome::Unsupported("never".into()), None, &[]),
            Ending::Cancel("never".into())
        );
    }

    #[test]
    fn only_the_guests_own_failure_fails() {
        assert_eq!(
            decide(&JobOutcome::Failed("memory limit".into()), None, &[]),
            Ending::Complete(CompletionState::Failed, Some("memory limit".into()))
        );
    }

    #[test]
    fn a_failed_final_call_releases_unless_the_lock_is_gone() {
        let completed = Ending::Complete(CompletionState::Completed, None);
        let cancelled = Ending::Cancel("never".into());
        for ended in [&completed, &cancelled] {
            assert!(matches!(
                after_failed_ending(ended, &transient()),
                Ending::Release(ReleaseCause::Registry, _)
            ));
            assert!(matches!(
                after_failed_ending(ended, &RegistryError::LockLost("409".into())),
                Ending::Abandon(_)
            ));
        }
        assert!(matches!(
            after_failed_ending(&cancelled, &refused()),
            Ending::Release(ReleaseCause::Registry, _)
        ));
    }

    #[test]
    fn a_refused_complete_fails_the_job_without_its_files() {
        let failed = Ending::Complete(CompletionState::Failed, Some("not a JPEG".into()));
        let Ending::FailWithoutFiles(why) = after_failed_ending(&failed, &refused()) else {
            panic!("a refused complete must end the job");
        };
        assert!(
            why.starts_with("not a JPEG") && why.contains("refused"),
            "{why}"
        );
    }

    #[test]
    fn a_camera_refusing_the_credentials_releases_before_the_guests_verdict() {
        for guest in every_guest_outcome() {
            assert_eq!(
                decide(&guest, Some("401"), &[refused()]),
                Ending::Release(ReleaseCause::CameraAuth, "401".into()),
                "{guest:?}"
            );
        }
        assert!(matches!(
            decide(&JobOutcome::Completed, Some("401"), &[transient()]),
            Ending::Release(ReleaseCause::Registry, _)
        ));
    }

    #[test]
    fn release_causes_have_distinct_names_in_order() {
        let names: Vec<_> = ReleaseCause::ALL.iter().map(|cause| cause.name()).collect();
        assert_eq!(
            names,
            [
                "guest",
                "registry",
                "shutdown",
                "panic",
                "camera-auth",
                "refused"
            ]
        );
        for (index, cause) in ReleaseCause::ALL.iter().enumerate() {
            assert_eq!(cause.index(), index);
        }
    }
}
