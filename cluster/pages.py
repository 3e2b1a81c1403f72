"""The live web pages the API server also serves: the jobs, and one job's curves as it trains.

Each page is one HTML document with a small inline script that fetches the API's
JSON (api.py) and redraws: no external assets, no CDN, nothing loaded from
anywhere but this server (its Content-Security-Policy says so). A browser cannot
send a bearer header when it follows a link, so `/?token=...` once sets an
HttpOnly, SameSite=Strict cookie holding the token, which then authorises GET
requests (only GETs: nothing a page does changes a job).
"""

from __future__ import annotations

import html

STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}
th{background:#f4f4f4}.SUCCEEDED{color:#080}.FAILED{color:#b00}.CANCELLED{color:#888}.RUNNING{color:#06c}
.bar{height:.8em;background:#06c}caption{text-align:left;font-weight:bold}iframe{width:100%;height:90vh;border:1px solid #ddd}svg{border:1px solid #ddd;background:#fff;margin:.5em 1em .5em 0}.facts td:first-child{font-weight:bold}
"""

JOBS_SCRIPT = """
const fmt = (x, d) => x == null ? "-" : (100 * x).toFixed(d) + "%";
const age = s => s < 90 ? Math.round(s) + " s" : s < 5400 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h";
async function refresh() {
  const jobs = await (await fetch("/api/v1/jobs", {credentials: "same-origin"})).json();
  const rows = jobs.slice().reverse().map(j => {
    const tr = document.createElement("tr");
    const cells = [j.id, j.state, j.epoch + " of " + periods(j.spec), fmt(j.test_accuracy, 2),
                   j.workers_alive + " of " + j.spec.workers, age(Date.now() / 1000 - j.created_at)];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      if (i === 0) { const a = document.createElement("a"); a.href = "/jobs/" + j.id; a.textContent = text; td.append(a); }
      else td.textContent = text;
      if (i === 1) td.className = j.state;
      tr.append(td);
    });
    return tr;
  });
  document.getElementById("jobs").replaceChildren(...rows);
  document.getElementById("count").textContent = jobs.length + " jobs";
}
const periods = s => s.algorithm.rounds ? Math.ceil(s.algorithm.rounds / (s.algorithm.eval_every || 1)) : s.algorithm.epochs;
refresh(); setInterval(refresh, 2000);
"""

JOB_SCRIPT = """
const id = document.body.dataset.job, lines = [];
const fmt = (x, d) => x == null ? "-" : (100 * x).toFixed(d) + "%";
function plot(svgId, key, label, asPercent) {
  const svg = document.getElementById(svgId), W = 480, H = 220, P = 36;
  const pts = lines.filter(l => l[key] != null).map(l => [l.epoch, l[key]]);
  svg.replaceChildren();
  const text = (x, y, s) => { const t = document.createElementNS(svg.namespaceURI, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "11"); t.textContent = s; svg.append(t); };
  text(P, 14, label);
  if (pts.length === 0) return;
  const xs = pts.map(p => p[0]), ys = pts.map(p => p[1]);
  const x0 = Math.min(...xs, 0), x1 = Math.max(...xs, 1), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = x => P + (x - x0) / (x1 - x0 || 1) * (W - 2 * P), sy = y => H - P + (y0 - y) / (y1 - y0 || 1) * (H - 2 * P);
  const line = document.createElementNS(svg.namespaceURI, "polyline");
  line.setAttribute("points", pts.map(p => sx(p[0]) + "," + sy(p[1])).join(" "));
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "#06c"); line.setAttribute("stroke-width", "2");
  svg.append(line);
  pts.forEach(p => { const c = document.createElementNS(svg.namespaceURI, "circle");
    c.setAttribute("cx", sx(p[0])); c.setAttribute("cy", sy(p[1])); c.setAttribute("r", "3"); c.setAttribute("fill", "#06c");
    c.setAttribute("class", "point"); svg.append(c); });
  const show = y => asPercent ? fmt(y, 2) : y.toFixed(4);
  text(4, sy(y1) + 4, show(y1)); text(4, sy(y0) + 4, show(y0)); text(W - P, H - 8, "epoch " + x1);
}
function progress(r) {  // "epoch 3 of 32", or in a federated job "round 30 of 87"
  const a = r.spec.algorithm, every = a.eval_every || 1;
  return a.rounds ? "round " + Math.min(r.epoch * every, a.rounds) + " of " + a.rounds : "epoch " + r.epoch + " of " + a.epochs;
}
function workers(last) {  // each worker's speed in the last scored epoch, as bars
  const speeds = (last && last.worker_samples_per_s) || [], top = Math.max(1, ...speeds.filter(v => v != null));
  document.getElementById("workers-title").textContent = speeds.length ? "samples/s by worker, epoch " + last.epoch : "";
  document.getElementById("workers").replaceChildren(...speeds.map((v, rank) => {
    const tr = document.createElement("tr"), bar = document.createElement("div");
    bar.className = "bar"; bar.style.width = (v == null ? 0 : Math.round(240 * v / top)) + "px";
    ["worker " + rank, v == null ? "-" : Math.round(v).toLocaleString(), bar].forEach(x => {
      const td = document.createElement("td"); td.append(x); tr.append(td); });
    return tr; }));
}
async function refresh() {
  const r = await (await fetch("/api/v1/jobs/" + id, {credentials: "same-origin"})).json();
  const fresh = await (await fetch("/api/v1/jobs/" + id + "/metrics?since=" + lines.length, {credentials: "same-origin"})).json();
  lines.push(...fresh);
  const facts = [["state", r.state + (r.message ? " (" + r.message + ")" : "")], ["progress", progress(r)],
    ["test accuracy", fmt(r.test_accuracy, 2)], ["samples/s", r.samples_per_s == null ? "-" : Math.round(r.samples_per_s).toLocaleString()],
    ["workers", r.workers_alive + " alive of " + r.spec.workers + ", " + r.worker_restarts + " restarts"],
    ["recoveries", String(r.recoveries)], ["algorithm", r.spec.algorithm.name]];
  document.getElementById("facts").replaceChildren(...facts.map(([k, v]) => {
    const tr = document.createElement("tr"); [k, v].forEach(s => { const td = document.createElement("td"); td.textContent = s; tr.append(td); });
    return tr; }));
  const speeds = lines.map(l => Math.round(l.samples_per_s / 1000) + "k").join(", ");
  document.getElementById("speed").textContent = speeds ? "samples/s by epoch: " + speeds : "";
  workers(lines[lines.length - 1]);
  plot("accuracy", "test_accuracy", "test accuracy", true);
  plot("loss", "test_loss", "test loss", false);
  document.getElementById("artifacts").hidden = r.state !== "SUCCEEDED";
  const report = document.getElementById("report");
  if (r.state === "SUCCEEDED" && !report.src) report.src = "/jobs/" + id + "/report";
  report.hidden = r.state !== "SUCCEEDED";
  if (!["SUCCEEDED", "FAILED", "CANCELLED"].includes(r.state)) setTimeout(refresh, 1000);
}
refresh();
"""


def page(title: str, body: str, script: str, data: str = "") -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body{data}>{body}<script>{script}</script></body></html>"
    )


def jobs_page() -> str:
    body = (
        '<h1>dtrain jobs</h1><p id="count"></p><table><thead><tr><th>id</th><th>state</th><th>progress</th>'
        '<th>test accuracy</th><th>workers</th><th>age</th></tr></thead><tbody id="jobs"></tbody></table>'
    )
    return page("dtrain jobs", body, JOBS_SCRIPT)


def job_page(job_id: str) -> str:
    """The page of job `job_id` (already checked to be an id: hex digits only)."""
    base = f"/api/v1/jobs/{job_id}/artifacts"
    body = (
        f'<p><a href="/">all jobs</a></p><h1>Job {job_id}</h1><table class="facts"><tbody id="facts"></tbody></table>'
        '<svg id="accuracy" width="480" height="220" role="img" aria-label="test accuracy by epoch"></svg>'
        '<svg id="loss" width="480" height="220" role="img" aria-label="test loss by epoch"></svg><p id="speed"></p>'
        '<table class="workers"><caption id="workers-title"></caption><tbody id="workers"></tbody></table>'
        f'<p id="artifacts" hidden><a href="{base}/report.json">report.json</a> · <a href="{base}/model.npz">model.npz</a>'
        f' · <a href="{base}/metrics.jsonl">metrics.jsonl</a> · <a href="/jobs/{job_id}/report">the report on its own page</a></p>'
        '<iframe id="report" title="the job\'s report" hidden></iframe>'
    )
    return page(f"dtrain job {job_id}", body, JOB_SCRIPT, f' data-job="{job_id}"')
