//! The job state machine: post, poll, lock, progress, renew, complete, cancel,
//! release, with PROTOCOL.md's idempotency rules. An expired lock is computed
//! from the stored expiry at each request, so a restart changes nothing.
//! Every transition that changes a job appends to its history
//! ([`store::record_event`]); idempotent repeats append nothing.

use crate::params;
use crate::store::Tx;

use crate::store::{self, JobEvent, JobRow, ToValue, now_ms};
use crate::wire::{
    ApiError, ApiResult, Code, JOB_TYPES, JobJson, NewJob, bad, conflict, not_found,
};

/// Longest lock granted unless configured otherwise.
pub const DEFAULT_MAX_LOCK_SECONDS: u64 = 300;

fn gone(row: &JobRow) -> ApiError {
    ApiError::new(
        Code::Gone,
        format!(
            "job {} is {} and no longer available",
            row.job_id, row.state
        ),
    )
}

fn lock_lost(row: &JobRow) -> ApiError {
    conflict(format!(
        "the lock on job {} is not held by this token (expired, released or taken)",
        row.job_id
    ))
}

fn load(tx: &Tx<'_>, job_id: &str) -> ApiResult<JobRow> {
    store::job(tx, job_id)?.ok_or_else(|| not_found(format!("no job {job_id}")))
}

/// A new job id.
pub fn new_job_id() -> String {
    let bytes: [u8; 12] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Checks and inserts a job; returns it.
pub fn post(tx: &Tx<'_>, job: &NewJob) -> ApiResult<JobJson> {
    if !JOB_TYPES.contains(&job.job_type.as_str()) {
        return Err(bad(format!(
            "unknown job type `{}`: use mediarequest, discovery or thumbnail",
            job.job_type
        )));
    }
    if job.agent_id.trim().is_empty() {
        return Err(bad("agentId is required"));
    }
    let needs_device = job.job_type != "discovery";
    if needs_device && job.device_id.as_deref().is_none_or(str::is_empty) {
        return Err(bad(format!("a {} job needs a deviceId", job.job_type)));
    }
    let (start, end) = match (
        job.job_type.as_str(),
        &job.start_time_utc,
        &job.end_time_utc,
    ) {
        ("mediarequest", Some(start), Some(end)) => {
            let (Some(from), Some(to)) = (store::parse_rfc3339(start), store::parse_rfc3339(end))
            else {
                return Err(bad("startTimeUtc and endTimeUtc must be RFC 3339"));
            };
            if to <= from {
                return Err(bad("endTimeUtc must be after startTimeUtc"));
            }
            (Some(start.clone()), Some(end.clone()))
        }
        ("mediarequest", _, _) => {
            return Err(bad("a mediarequest job needs startTimeUtc and endTimeUtc"));
        }
        _ => (None, None),
    };
    if let Some((name, _)) = job.parameters.iter().find(|(_, value)| !value.is_string()) {
        return Err(bad(format!("parameter `{name}` is not a string")));
    }
    let job_id = new_job_id();
    let device = if needs_device {
        job.device_id.clone()
    } else {
        None
    };
    tx.execute(
        "INSERT INTO jobs (job_id, job_type, agent_id, device_id, start_utc, end_utc, parameters, state, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'Available', ?8)",
        params![
            job_id,
            job.job_type,
            job.agent_id,
            device,
            start,
            end,
            serde_json::Value::Object(job.parameters.clone()).to_string(),
            now_ms()
        ],
    )?;
    store::record_event(tx, &job_id, JobEvent::Posted, None, now_ms(), None)?;
    Ok(load(tx, &job_id)?.to_json(now_ms()))
}

/// Up to `max` jobs of `agent_id` that may be locked, of `types` (all when
/// empty): those whose lease ran out first (they waited longest), then the
/// available ones, each oldest first. Each part is a `LIMIT`ed read of the
/// `jobs_by_agent` index, so a poll costs the same with 10 or 100,000 jobs
/// waiting.
pub fn available(
    tx: &Tx<'_>,
    agent_id: &str,
    types: &[String],
    max: usize,
) -> ApiResult<Vec<JobJson>> {
    let now = now_ms();
    store::record_poll(tx, agent_id, now)?;
    let agent_id = agent_id.to_string();
    let of_types = |first: usize| -> String {
        if types.is_empty() {
            return String::new();
        }
        let marks: Vec<String> = (first..first + types.len())
            .map(|index| format!("?{index}"))
            .collect();
        format!(" AND job_type IN ({})", marks.join(", "))
    };
    fn with_types<'a>(
        mut values: Vec<&'a dyn ToValue>,
        types: &'a [String],
    ) -> Vec<&'a dyn ToValue> {
        values.extend(types.iter().map(|job_type| job_type as &dyn ToValue));
        values
    }
    let limit = max as i64;
    let mut rows = store::first_jobs_where(
        tx,
        &format!(
            "agent_id = ?1 AND state = 'Locked' AND lock_expires_ms <= ?2{}",
            of_types(4)
        ),
        &with_types(vec![&agent_id, &now, &limit], types),
        "?3",
    )?;
    let left = limit - rows.len() as i64;
    if left > 0 {
        rows.extend(store::first_jobs_where(
            tx,
            &format!("agent_id = ?1 AND state = 'Available'{}", of_types(3)),
            &with_types(vec![&agent_id, &left], types),
            "?2",
        )?);
    }
    Ok(rows.into_iter().map(|row| row.to_json(now)).collect())
}

/// Grants a lock (or repeats the current one to a retry with the same request id).
pub fn lock(
    tx: &Tx<'_>,
    job_id: &str,
    agent_id: &str,
    seconds: u64,
    request_id: Option<&str>,
    cap: u64,
) -> ApiResult<(String, i64)> {
    let row = load(tx, job_id)?;
    let now = now_ms();
    if row.agent_id != agent_id {
        return Err(ApiError::new(
            Code::Forbidden,
            format!("job {job_id} is posted for another agent"),
        ));
    }
    if row.is_final() {
        return Err(gone(&row));
    }
    if row.is_locked(now) {
        if request_id.is_some() && row.lock_request_id.as_deref() == request_id {
            let token = row.lock_token.clone().unwrap_or_default();
            return Ok((token, row.lock_expires_ms.unwrap_or(now)));
        }
        return Err(conflict(format!("job {job_id} is locked by someone else")));
    }
    if seconds == 0 {
        return Err(bad("lockDurationSeconds must be positive"));
    }
    if row.state == "Locked" {
        // Locked, but not now: its lease ran out.
        store::bump(tx, store::Counter::ExpiredLocks)?;
        let ended = row.lock_expires_ms.unwrap_or(now);
        store::record_event(
            tx,
            job_id,
            JobEvent::Expired,
            Some(&row.agent_id),
            ended,
            None,
        )?;
    }
    let token = crate::auth::random_token();
    let expires = now + (seconds.min(cap) as i64) * 1000;
    tx.execute(
        "UPDATE jobs SET state = 'Locked', lock_token = ?2, lock_request_id = ?3, lock_expires_ms = ?4,
         task_progress = 0, task_total = 0, released_token = NULL WHERE job_id = ?1",
        params![job_id, token, request_id, expires],
    )?;
    crate::files::abandon_stale(tx, job_id, &token)?;
    store::record_event(tx, job_id, JobEvent::Locked, Some(agent_id), now, None)?;
    Ok((token, expires))
}

/// Records progress.
pub fn progress(tx: &Tx<'_>, job_id: &str, token: &str, done: i64, total: i64) -> ApiResult<()> {
    let row = load(tx, job_id)?;
    if !row.is_locked_by(token, now_ms()) {
        return Err(lock_lost(&row));
    }
    if done < 0 || total < 0 || done > total {
        return Err(bad(format!(
            "taskProgress {done} / taskTotal {total}: need 0 <= progress <= total"
        )));
    }
    tx.execute(
        "UPDATE jobs SET task_progress = ?2, task_total = ?3 WHERE job_id = ?1",
        params![job_id, done, total],
    )?;
    Ok(())
}

/// Extends the lock.
pub fn renew(tx: &Tx<'_>, job_id: &str, token: &str, seconds: u64, cap: u64) -> ApiResult<i64> {
    let row = load(tx, job_id)?;
    if !row.is_locked_by(token, now_ms()) {
        return Err(lock_lost(&row));
    }
    let now = now_ms();
    let expires = now + (seconds.clamp(1, cap) as i64) * 1000;
    tx.execute(
        "UPDATE jobs SET lock_expires_ms = ?2 WHERE job_id = ?1",
        params![job_id, expires],
    )?;
    store::record_event(
        tx,
        job_id,
        JobEvent::Renewed,
        Some(&row.agent_id),
        now,
        None,
    )?;
    Ok(expires)
}

/// Completes the job in `state`.
pub fn complete(
    tx: &Tx<'_>,
    job_id: &str,
    token: &str,
    state: &str,
    message: Option<&str>,
) -> ApiResult<()> {
    if !["Completed", "PartiallyCompleted", "Failed"].contains(&state) {
        return Err(bad(format!(
            "state `{state}` is not Completed, PartiallyCompleted or Failed"
        )));
    }
    let row = load(tx, job_id)?;
    if row.state == state && row.final_token.as_deref() == Some(token) {
        return Ok(());
    }
    if !row.is_locked_by(token, now_ms()) {
        return Err(lock_lost(&row));
    }
    crate::files::check_all_committed(tx, job_id, token)?;
    finish(tx, job_id, Some(token), state, message)?;
    let detail = match message {
        Some(message) => format!("{state}: {message}"),
        None => state.to_string(),
    };
    let agent = Some(row.agent_id.as_str());
    store::record_event(
        tx,
        job_id,
        JobEvent::Completed,
        agent,
        now_ms(),
        Some(&detail),
    )
}

/// After a refused complete: counts it if it tried to complete a job that is
/// already final (anything but the idempotent repeat, which is accepted).
pub fn note_refused_complete(tx: &Tx<'_>, job_id: &str) -> ApiResult<()> {
    if store::job(tx, job_id)?.is_some_and(|row| row.is_final()) {
        store::bump(tx, store::Counter::DoubleCompletes)?;
    }
    Ok(())
}

/// Cancels the job for good.
pub fn cancel(tx: &Tx<'_>, job_id: &str, token: &str, reason: &str) -> ApiResult<()> {
    if reason.trim().is_empty() {
        return Err(bad("a cancel needs a reason"));
    }
    let row = load(tx, job_id)?;
    if row.state == "Cancelled" && row.final_token.as_deref() == Some(token) {
        return Ok(());
    }
    if !row.is_locked_by(token, now_ms()) {
        return Err(lock_lost(&row));
    }
    crate::files::abandon_lock(tx, job_id, token)?;
    finish(tx, job_id, Some(token), "Cancelled", Some(reason))?;
    let agent = Some(row.agent_id.as_str());
    store::record_event(
        tx,
        job_id,
        JobEvent::Cancelled,
        agent,
        now_ms(),
        Some(reason),
    )
}

/// Cancels a job for the operator (`corral registry cancel-job`), whoever
/// holds it: an available job is never offered again, and a locked one's
/// agent loses its lock (its next renewal or upload answers 409) and its
/// files of that lock are discarded. A job already final is refused.
pub fn cancel_by_operator(tx: &Tx<'_>, job_id: &str, reason: &str) -> ApiResult<JobJson> {
    if reason.trim().is_empty() {
        return Err(bad("a cancel needs a reason"));
    }
    let row = load(tx, job_id)?;
    if row.is_final() {
        return Err(gone(&row));
    }
    if let Some(token) = &row.lock_token {
        crate::files::abandon_lock(tx, job_id, token)?;
    }
    finish(tx, job_id, None, "Cancelled", Some(reason))?;
    store::record_event(
        tx,
        job_id,
        JobEvent::Cancelled,
        None,
        now_ms(),
        Some(reason),
    )?;
    Ok(load(tx, job_id)?.to_json(now_ms()))
}

fn finish(
    tx: &Tx<'_>,
    job_id: &str,
    token: Option<&str>,
    state: &str,
    message: Option<&str>,
) -> ApiResult<()> {
    tx.execute(
        "UPDATE jobs SET state = ?2, message = ?3, final_token = ?4, lock_token = NULL, lock_request_id = NULL,
         lock_expires_ms = NULL WHERE job_id = ?1",
        params![job_id, state, message, token],
    )?;
    Ok(())
}

/// Makes the job available again.
pub fn release(tx: &Tx<'_>, job_id: &str, token: &str) -> ApiResult<()> {
    let row = load(tx, job_id)?;
    if row.state == "Available" && row.released_token.as_deref() == Some(token) {
        return Ok(());
    }
    if !row.is_locked_by(token, now_ms()) {
        return Err(lock_lost(&row));
    }
    crate::files::abandon_lock(tx, job_id, token)?;
    tx.execute(
        "UPDATE jobs SET state = 'Available', lock_token = NULL, lock_request_id = NULL, lock_expires_ms = NULL,
         task_progress = 0, task_total = 0, released_token = ?2 WHERE job_id = ?1",
        params![job_id, token],
    )?;
    let agent = Some(row.agent_id.as_str());
    store::record_event(tx, job_id, JobEvent::Released, agent, now_ms(), None)
}

/// One job with its files.
pub fn get(tx: &Tx<'_>, job_id: &str) -> ApiResult<JobJson> {
    let row = load(tx, job_id)?;
    let mut json = row.to_json(now_ms());
    json.files = Some(
        store::files_of(tx, job_id)?
            .iter()
            .map(store::FileRow::to_json)
            .collect(),
    );
    Ok(json)
}

/// All jobs, optionally filtered, oldest first, with their files.
pub fn list(tx: &Tx<'_>, state: Option<&str>, agent: Option<&str>) -> ApiResult<Vec<JobJson>> {
    let now = now_ms();
    let rows = store::jobs_where(tx, "1 = 1", &[])?;
    let mut jobs = Vec::new();
    for row in rows {
        let mut json = row.to_json(now);
        if state.is_some_and(|state| state != json.state)
            || agent.is_some_and(|agent| agent != json.agent_id)
        {
            continue;
        }
        json.files = Some(
            store::files_of(tx, &row.job_id)?
                .iter()
                .map(store::FileRow::to_json)
                .collect(),
        );
        jobs.push(json);
    }
    Ok(jobs)
}
