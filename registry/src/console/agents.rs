//! The agents page: every agent id the registry knows (registered, polled,
//! or named by a job) with its last poll, the jobs it is running now, and
//! how many it completed, failed or had cancelled.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::response::Html;

use super::auth::PageSession;
use super::html::{self, Nav, esc, url_part};
use super::{Console, Refusal};
use crate::store::{self, now_ms};

/// What the page shows of one agent.
#[derive(Default)]
struct AgentLine {
    last_poll_ms: Option<i64>,
    running: Vec<String>,
    /// Jobs by final state.
    ended: BTreeMap<String, usize>,
}

/// `/console/agents`.
pub async fn agents_page(
    State(console): State<Console>,
    PageSession(session): PageSession,
) -> Result<Html<String>, Refusal> {
    let agents = console
        .registry()
        .store()
        .transaction(|tx| {
            let mut agents: BTreeMap<String, AgentLine> = BTreeMap::new();
            for agent in crate::auth::agents(tx)? {
                agents.entry(agent).or_default();
            }
            for (agent, at_ms) in store::last_polls(tx)? {
                agents.entry(agent).or_default().last_poll_ms = Some(at_ms);
            }
            for (agent, state, count) in store::job_counts(tx)? {
                let line = agents.entry(agent).or_default();
                if store::FINAL_STATES.contains(&state.as_str()) {
                    line.ended.insert(state, count.max(0) as usize);
                }
            }
            let now = now_ms();
            let locked = "state = 'Locked' AND lock_expires_ms > ?1";
            for row in store::jobs_where(tx, locked, &[&now])? {
                let line = agents.entry(row.agent_id.clone()).or_default();
                line.running.push(row.job_id);
            }
            Ok(agents)
        })
        .await?;
    let mut rows = String::new();
    for (agent, line) in &agents {
        let count = |state: &str| {
            let n = line.ended.get(state).copied().unwrap_or(0);
            format!(
                r#"<a href="/console/jobs?agent={}&amp;state={state}">{n}</a>"#,
                url_part(agent)
            )
        };
        let running: String = line
            .running
            .iter()
            .map(|job| {
                format!(
                    r#"<a href="/console/jobs/{}"><code>{}</code></a> "#,
                    url_part(job),
                    esc(job)
                )
            })
            .collect();
        let _ = write!(
            rows,
            r#"<tr data-agent-id="{id}"><td><a href="/console/jobs?agent={href}">{id}</a></td><td class="last-poll">{poll}</td><td class="running">{running}</td><td>{completed}</td><td>{partial}</td><td>{failed}</td><td>{cancelled}</td></tr>"#,
            id = esc(agent),
            href = url_part(agent),
            poll = esc(&line
                .last_poll_ms
                .map(html::time)
                .unwrap_or_else(|| "never".into())),
            completed = count("Completed"),
            partial = count("PartiallyCompleted"),
            failed = count("Failed"),
            cancelled = count("Cancelled"),
        );
    }
    let body = format!(
        r#"<h1>Agents</h1>
<table id="agents"><thead><tr><th>Agent</th><th>Last poll</th><th>Running</th><th>Completed</th><th>Partially</th><th>Failed</th><th>Cancelled</th></tr></thead>
<tbody>{rows}</tbody></table>
<p class="hint">The last poll is recorded at most once a second per agent.</p>"#
    );
    Ok(Html(html::layout(
        "Agents",
        Some(Nav::Agents),
        Some(&session.csrf),
        &body,
    )))
}
