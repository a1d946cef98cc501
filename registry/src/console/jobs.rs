//! The jobs page (a table refreshed every second from `/console/api/jobs`,
//! filtered by state, type and agent), a job's own page (its files and its
//! history), and the form that posts a job through the admin API's code.

use std::fmt::Write as _;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, Redirect};
use axum::{Form, Json};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::auth::{DataSession, PageSession};
use super::html::{self, Nav, esc, url_part};
use super::{Console, Refusal};
use crate::store::{self, ToValue, now_ms};
use crate::wire::{JOB_TYPES, JobJson, NewJob};
use crate::{admin, auth};

/// The states a job can be in, for the filter.
const STATES: [&str; 6] = [
    "Available",
    "Locked",
    "Completed",
    "PartiallyCompleted",
    "Failed",
    "Cancelled",
];

/// The most rows the table shows (the newest).
pub const MAX_ROWS: usize = 500;

/// The table's filters (an empty value is no filter).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Filters {
    #[serde(default)]
    state: String,
    #[serde(default, rename = "type")]
    job_type: String,
    #[serde(default)]
    agent: String,
    /// A job just posted from the form, announced above the table.
    #[serde(default)]
    posted: String,
}

impl Filters {
    /// The filters as a WHERE clause and its values. A state is the one a
    /// job shows at `now`: a lock that ran out is Available.
    fn clause<'a>(&'a self, now: &'a i64) -> (String, Vec<&'a dyn ToValue>) {
        let mut values: Vec<&dyn ToValue> = Vec::new();
        let mut parts = vec!["1 = 1".to_string()];
        let mut bind = |value: &'a dyn ToValue| {
            values.push(value);
            format!("?{}", values.len())
        };
        match self.state.as_str() {
            "" => {}
            "Available" => parts.push(format!(
                "(state = 'Available' OR (state = 'Locked' AND lock_expires_ms <= {}))",
                bind(now)
            )),
            "Locked" => parts.push(format!(
                "state = 'Locked' AND lock_expires_ms > {}",
                bind(now)
            )),
            _ => parts.push(format!("state = {}", bind(&self.state))),
        }
        if !self.job_type.is_empty() {
            parts.push(format!("job_type = {}", bind(&self.job_type)));
        }
        if !self.agent.is_empty() {
            parts.push(format!("agent_id = {}", bind(&self.agent)));
        }
        (parts.join(" AND "), values)
    }
}

/// One row of the table, as the page and the live endpoint both show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobLine {
    job_id: String,
    #[serde(rename = "type")]
    job_type: String,
    state: String,
    device_id: String,
    agent_id: String,
    progress: String,
    created_utc: String,
    message: String,
}

impl JobLine {
    fn of(job: &JobJson) -> JobLine {
        JobLine {
            job_id: job.job_id.clone(),
            job_type: job.job_type.clone(),
            state: job.state.clone(),
            device_id: job.device_id.clone().unwrap_or_default(),
            agent_id: job.agent_id.clone(),
            progress: progress(job.task_progress, job.task_total),
            created_utc: job.created_utc.clone(),
            message: job.message.clone().unwrap_or_default(),
        }
    }

    /// The row in HTML; `assets/console.js` builds the same cells.
    fn row(&self) -> String {
        format!(
            r#"<tr data-job-id="{id}"><td><a href="/console/jobs/{href}">{id}</a></td><td>{job_type}</td><td class="state state-{state}">{state}</td><td>{device}</td><td>{agent}</td><td class="progress">{progress}</td><td>{created}</td><td class="message">{message}</td></tr>"#,
            id = esc(&self.job_id),
            href = url_part(&self.job_id),
            job_type = esc(&self.job_type),
            state = esc(&self.state),
            device = esc(&self.device_id),
            agent = esc(&self.agent_id),
            progress = esc(&self.progress),
            created = esc(&self.created_utc),
            message = esc(&self.message),
        )
    }
}

/// `done / total (percent)`, or a dash before any progress.
fn progress(done: u64, total: u64) -> String {
    if total == 0 {
        return "—".to_string();
    }
    format!("{done} / {total} ({}%)", done.saturating_mul(100) / total)
}

/// The newest jobs the filters keep, newest first.
async fn lines(console: &Console, filters: Filters) -> Result<Vec<JobLine>, Refusal> {
    let jobs = console
        .registry()
        .store()
        .transaction(move |tx| {
            let now = now_ms();
            let (clause, values) = filters.clause(&now);
            Ok(store::newest_jobs_where(tx, &clause, &values, MAX_ROWS)?
                .iter()
                .map(|row| JobLine::of(&row.to_json(now)))
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(jobs)
}

/// `/console/api/jobs`: the table's rows as JSON, for the live refresh.
pub async fn jobs_data(
    State(console): State<Console>,
    _session: DataSession,
    Query(filters): Query<Filters>,
) -> Result<Json<Vec<JobLine>>, Refusal> {
    Ok(Json(lines(&console, filters).await?))
}

fn options(values: &[String], selected: &str, any: &str) -> String {
    let mut html = format!(r#"<option value="">{}</option>"#, esc(any));
    for value in values {
        let mark = if value == selected { " selected" } else { "" };
        let _ = write!(
            html,
            r#"<option value="{v}"{mark}>{v}</option>"#,
            v = esc(value)
        );
    }
    html
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

/// `/console/jobs`: the filters, the live table and the form to post a job.
pub async fn jobs_page(
    State(console): State<Console>,
    PageSession(session): PageSession,
    Query(filters): Query<Filters>,
) -> Result<Html<String>, Refusal> {
    let rows = lines(&console, filters.clone()).await?;
    let store = console.registry().store().clone();
    let (agents, devices) = console
        .registry()
        .store()
        .transaction(move |tx| {
            let devices = admin::devices(&store, tx)?
                .iter()
                .filter_map(|device| device.device.get("deviceId")?.as_str().map(String::from))
                .collect::<Vec<_>>();
            Ok((auth::agents(tx)?, devices))
        })
        .await?;
    let posted = if filters.posted.is_empty() {
        String::new()
    } else {
        format!(
            r#"<p class="notice" id="posted">Posted job <a href="/console/jobs/{}">{}</a>.</p>"#,
            url_part(&filters.posted),
            esc(&filters.posted)
        )
    };
    let table: String = rows.iter().map(JobLine::row).collect();
    let device_options: String = devices
        .iter()
        .map(|device| format!(r#"<option value="{}">"#, esc(device)))
        .collect();
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::now_utc());
    let minute = |offset: i64| {
        (now + time::Duration::minutes(offset))
            .format(&Rfc3339)
            .unwrap_or_default()
    };
    let body = format!(
        r#"<h1>Jobs</h1>
{posted}
<form method="get" action="/console/jobs" class="filters" id="filters">
<label>State <select name="state" id="filter-state">{states}</select></label>
<label>Type <select name="type" id="filter-type">{types}</select></label>
<label>Agent <select name="agent" id="filter-agent">{agent_filter}</select></label>
<button type="submit">Filter</button>
<span class="live" id="live" aria-live="polite">live</span>
</form>
<table id="jobs" class="jobs">
<thead><tr><th>Job</th><th>Type</th><th>State</th><th>Device</th><th>Agent</th><th>Progress</th><th>Posted</th><th>Message</th></tr></thead>
<tbody>{table}</tbody>
</table>
<p class="hint">The newest {MAX_ROWS} jobs; the table refreshes every second.</p>
<h2>Post a job</h2>
<form method="post" action="/console/jobs" class="post-job" id="post-job">
<input type="hidden" name="csrf" value="{csrf}">
<label>Type <select name="type" id="post-type">{post_types}</select></label>
<label>Agent <select name="agent" id="post-agent" required>{post_agents}</select></label>
<label>Device <input name="device" id="post-device" list="devices" placeholder="cam-0001 (not for discovery)"></label>
<datalist id="devices">{device_options}</datalist>
<label>From (UTC) <input name="start" id="post-start" value="{start}"></label>
<label>To (UTC) <input name="end" id="post-end" value="{end}"></label>
<button type="submit" id="post-submit">Post</button>
</form>
<p class="hint">From and To (RFC 3339) are for recordings (mediarequest) only.</p>"#,
        states = options(&strings(&STATES), &filters.state, "any"),
        types = options(&strings(&JOB_TYPES), &filters.job_type, "any"),
        agent_filter = options(&agents, &filters.agent, "any"),
        csrf = esc(&session.csrf),
        post_types = options(&strings(&JOB_TYPES), "thumbnail", "choose…"),
        post_agents = options(
            &agents,
            agents.first().map_or("", String::as_str),
            "choose…"
        ),
        start = esc(&minute(-3)),
        end = esc(&minute(-2)),
    );
    Ok(Html(html::layout(
        "Jobs",
        Some(Nav::Jobs),
        Some(&session.csrf),
        &body,
    )))
}

/// What the post-a-job form sends.
#[derive(Debug, Deserialize)]
pub struct PostForm {
    #[serde(default)]
    csrf: String,
    #[serde(default, rename = "type")]
    job_type: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    device: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
}

impl PostForm {
    fn new_job(&self) -> NewJob {
        let given = |value: &str| {
            let value = value.trim();
            (!value.is_empty()).then(|| value.to_string())
        };
        let media = self.job_type == "mediarequest";
        NewJob {
            job_type: self.job_type.trim().to_string(),
            agent_id: self.agent.trim().to_string(),
            device_id: given(&self.device),
            start_time_utc: given(&self.start).filter(|_| media),
            end_time_utc: given(&self.end).filter(|_| media),
            parameters: Default::default(),
        }
    }
}

/// Posts the form's job (the admin API's code, so the same checks) and
/// shows the jobs page announcing it.
pub async fn post_job(
    State(console): State<Console>,
    PageSession(session): PageSession,
    headers: HeaderMap,
    Form(form): Form<PostForm>,
) -> Result<Redirect, Refusal> {
    session.check_form(&headers, &form.csrf)?;
    let job = form.new_job();
    let posted = console
        .registry()
        .store()
        .transaction(move |tx| admin::post_jobs(tx, std::slice::from_ref(&job)))
        .await?;
    let id = posted.first().map(|job| job.job_id.as_str()).unwrap_or("");
    Ok(Redirect::to(&format!(
        "/console/jobs?posted={}",
        url_part(id)
    )))
}

/// `/console/jobs/{id}`: the job, its files (downloadable) and its history.
pub async fn job_page(
    State(console): State<Console>,
    PageSession(session): PageSession,
    Path(job_id): Path<String>,
) -> Result<Html<String>, Refusal> {
    let (job, history) = console
        .registry()
        .store()
        .transaction(move |tx| Ok((crate::jobs::get(tx, &job_id)?, store::history(tx, &job_id)?)))
        .await?;
    let mut facts = String::new();
    let mut fact = |name: &str, value: &str| {
        if !value.is_empty() {
            let _ = write!(facts, "<dt>{}</dt><dd>{}</dd>", esc(name), esc(value));
        }
    };
    fact("Type", &job.job_type);
    fact("State", &job.state);
    fact("Agent", &job.agent_id);
    fact("Device", job.device_id.as_deref().unwrap_or(""));
    fact("From", job.start_time_utc.as_deref().unwrap_or(""));
    fact("To", job.end_time_utc.as_deref().unwrap_or(""));
    fact("Posted", &job.created_utc);
    fact(
        "Lock until",
        job.lock_expiration_utc.as_deref().unwrap_or(""),
    );
    fact("Progress", &progress(job.task_progress, job.task_total));
    fact("Message", job.message.as_deref().unwrap_or(""));
    if !job.parameters.is_empty() {
        fact(
            "Parameters",
            &serde_json::Value::Object(job.parameters.clone()).to_string(),
        );
    }
    let files: String = job
        .files
        .iter()
        .flatten()
        .map(|file| {
            let download = if file.committed {
                format!(
                    r#"<a class="download" href="/console/files/{}">Download</a>"#,
                    url_part(&file.file_id)
                )
            } else {
                "not committed".to_string()
            };
            format!(
                r#"<tr data-file-id="{id}"><td>{name}</td><td>{kind}</td><td>{content_type}</td><td class="size">{size}</td><td><code class="sha256">{sha}</code></td><td>{download}</td></tr>"#,
                id = esc(&file.file_id),
                name = esc(&file.file_name),
                kind = esc(&file.kind),
                content_type = esc(&file.content_type),
                size = file.length.map(|length| length.to_string()).unwrap_or_default(),
                sha = esc(file.sha256.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let history: String = history
        .iter()
        .map(|entry| {
            format!(
                r#"<tr><td>{}</td><td class="event">{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&html::time(entry.at_ms)),
                esc(&entry.event),
                esc(entry.agent_id.as_deref().unwrap_or("operator")),
                esc(entry.detail.as_deref().unwrap_or("")),
            )
        })
        .collect();
    let body = format!(
        r#"<h1>Job <code>{id}</code></h1>
<dl class="facts">{facts}</dl>
<h2>Files</h2>
<table id="files"><thead><tr><th>Name</th><th>Kind</th><th>Type</th><th>Bytes</th><th>SHA-256</th><th></th></tr></thead>
<tbody>{files}</tbody></table>
<h2>History</h2>
<table id="history"><thead><tr><th>Time</th><th>Event</th><th>Agent</th><th>Detail</th></tr></thead>
<tbody>{history}</tbody></table>"#,
        id = esc(&job.job_id),
    );
    Ok(Html(html::layout(
        "Job",
        Some(Nav::Jobs),
        Some(&session.csrf),
        &body,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_one_clause_with_its_values() {
        let now = 5;
        let none = Filters::default();
        assert_eq!(none.clause(&now).0, "1 = 1");
        let filters = Filters {
            state: "Available".into(),
            job_type: "thumbnail".into(),
            agent: "agent-1".into(),
            posted: String::new(),
        };
        let (clause, values) = filters.clause(&now);
        assert_eq!(
            clause,
            "1 = 1 AND (state = 'Available' OR (state = 'Locked' AND lock_expires_ms <= ?1)) \
             AND job_type = ?2 AND agent_id = ?3"
        );
        assert_eq!(values.len(), 3);
        let failed = Filters {
            state: "Failed".into(),
            ..Filters::default()
        };
        assert_eq!(failed.clause(&now).0, "1 = 1 AND state = ?1");
    }

    #[test]
    fn progress_reads_as_a_share() {
        assert_eq!(progress(0, 0), "—");
        assert_eq!(progress(1, 4), "1 / 4 (25%)");
    }

    #[test]
    fn a_row_escapes_what_agents_wrote() {
        let line = JobLine {
            job_id: "j1".into(),
            job_type: "thumbnail".into(),
            state: "Failed".into(),
            device_id: "cam".into(),
            agent_id: "agent-1".into(),
            progress: "—".into(),
            created_utc: String::new(),
            message: "<img src=x onerror=alert(1)>".into(),
        };
        let row = line.row();
        assert!(row.contains("&lt;img src=x onerror=alert(1)&gt;"), "{row}");
        assert!(!row.contains("<img"), "{row}");
    }
}
