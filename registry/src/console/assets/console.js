// The console's one script: it refreshes the jobs table every second from
// /console/api/jobs (with the page's filters), writing every value with
// textContent, so nothing an agent or a camera wrote is ever read as markup.
"use strict";

(function () {
  const table = document.getElementById("jobs");
  if (!table) {
    return;
  }
  const body = table.tBodies[0];
  const live = document.getElementById("live");
  const columns = ["type", "state", "deviceId", "agentId", "progress", "createdUtc", "message"];

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) {
      td.className = className;
    }
    return td;
  }

  // The same cells as the server's JobLine::row.
  function row(job) {
    const tr = document.createElement("tr");
    tr.dataset.jobId = job.jobId;
    const first = document.createElement("td");
    const link = document.createElement("a");
    link.href = "/console/jobs/" + encodeURIComponent(job.jobId);
    link.textContent = job.jobId;
    first.appendChild(link);
    tr.appendChild(first);
    for (const name of columns) {
      const className =
        name === "state" ? "state state-" + job.state :
        name === "progress" || name === "message" ? name : "";
      tr.appendChild(cell(job[name], className));
    }
    return tr;
  }

  async function refresh() {
    try {
      const answer = await fetch("/console/api/jobs" + window.location.search, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (answer.status === 401) {
        window.location.assign("/console/sign-in");
        return;
      }
      if (!answer.ok) {
        throw new Error("the registry answered " + answer.status);
      }
      const jobs = await answer.json();
      body.replaceChildren(...jobs.map(row));
      live.textContent = "live · " + new Date().toLocaleTimeString();
      live.classList.remove("stale");
    } catch (error) {
      live.textContent = "not updated: " + error.message;
      live.classList.add("stale");
    }
  }

  window.setInterval(refresh, 1000);
})();
