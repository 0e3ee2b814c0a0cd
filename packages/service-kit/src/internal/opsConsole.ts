// The ops console: one self-contained page over the ops API (no CDN, works offline). The token is
// kept in sessionStorage and sent as a bearer token. Served by an `OpsGateway` (it answers
// `/services`), it shows every service's health, failure groups, FAILED outbox rows and operations
// together, each request going to `/services/{name}/ops/…`; served by one service's `OpsServer`
// (`/services` is not found there), it shows that service alone.
export const consoleHtml = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>kpipe ops</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 1rem; color: #222; }
  table { border-collapse: collapse; margin: .5rem 0; }
  th, td { border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
  tr.pick { cursor: pointer; } tr.pick:hover { background: #eef; }
  td.down { color: #b00; } td.warn { background: #fff3d6; }
  pre { background: #f7f7f7; padding: .5rem; max-height: 20rem; overflow: auto; }
  .error { color: #b00; } button { margin-right: .5rem; }
  #outboxConfirm:not(:empty), #actions:not(:empty) { background: #fff3d6; padding: .4rem; margin: .3rem 0; }
</style>
</head>
<body>
<h1>kpipe ops</h1>
<p><label>Admin token <input id="token" type="password" size="40"></label> <button id="connect">Connect</button>
  <label>Service <select id="service"><option value="">all services</option></select></label>
  <span id="message" class="error"></span></p>
<h2>Services</h2>
<table id="health"></table>
<h2>Failure groups</h2>
<table id="groups"></table>
<h2>Failures <span id="failuresOf"></span></h2>
<div id="actions"></div>
<table id="failures"></table>
<h2>Failure</h2>
<div id="detail">Pick a failure.</div>
<h2>Outbox rows that could not be published (FAILED)</h2>
<div id="outboxConfirm"></div>
<table id="outbox"></table>
<h2>Operations</h2>
<table id="operations"></table>
<script>
const $ = (id) => document.getElementById(id)
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c])
const cell = (v) => esc(typeof v === "object" && v !== null ? JSON.stringify(v) : v)
// Every service shown: its name and where its ops API is ("" when this page is one service's own).
let services = []
// The picked failure group: its service and selection.
let current = null
async function request(path, body) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: "Bearer " + sessionStorage.getItem("kpipe-token"), "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const json = await response.json().catch(() => ({}))
  if (!response.ok) {
    const error = new Error(response.status + " " + (json._tag ?? "") + " " + (json.message ?? ""))
    error.status = response.status
    throw error
  }
  return json
}
const api = (service, path, body) => request(service.base + path, body)
async function loadServices() {
  try {
    const list = await request("/services")
    services = list.map((s) => ({ name: s.name, base: "/services/" + encodeURIComponent(s.name) }))
  } catch (e) {
    if (e.status !== 404) throw e
    services = [{ name: "this service", base: "" }]
  }
  const picked = $("service").value
  $("service").innerHTML = "<option value=''>all services</option>" +
    services.map((s) => "<option" + (s.name === picked ? " selected" : "") + ">" + esc(s.name) + "</option>").join("")
}
function table(el, rows, columns, options = {}) {
  el.innerHTML = "<tr>" + columns.map((c) => "<th>" + esc(c) + "</th>").join("") + (options.actions ? "<th></th>" : "") + "</tr>" +
    rows.map((r, i) => "<tr class='" + (options.pick ? "pick" : "") + "' data-i='" + i + "'>" +
      columns.map((c) => "<td data-col='" + esc(c) + "'" + (options.cellClass ? " class='" + options.cellClass(r, c) + "'" : "") + ">" + cell(r[c]) + "</td>").join("") +
      (options.actions ? "<td>" + options.actions(r, i) + "</td>" : "") + "</tr>").join("")
  if (options.pick) el.querySelectorAll("tr.pick").forEach((tr) => tr.onclick = () => options.pick(rows[Number(tr.dataset.i)]))
  if (options.bind) options.bind(el, rows)
}
const serviceOf = (name) => services.find((s) => s.name === name)
const query = (s) => "?" + new URLSearchParams(Object.entries(s).filter(([, v]) => v != null)).toString()
async function snapshot(service) {
  try {
    const [health, groups, outbox, operations] = await Promise.all([
      api(service, "/ops/health"), api(service, "/ops/failures/groups"), api(service, "/ops/outbox/failed"), api(service, "/ops/operations")
    ])
    return { service, health, groups, outbox, operations }
  } catch (e) { return { service, error: e.message, groups: [], outbox: [], operations: [] } }
}
async function refresh() {
  try {
    if (services.length === 0) await loadServices()
    const picked = $("service").value
    const shown = await Promise.all(services.filter((s) => picked === "" || s.name === picked).map(snapshot))
    // Another service was picked meanwhile: that refresh renders, not this one.
    if ($("service").value !== picked) return
    const tagged = (key) => shown.flatMap((s) => s[key].map((row) => ({ service: s.service.name, ...row })))
    table($("health"), shown.map((s) => s.error !== undefined ? { service: s.service.name, state: s.error } : {
      service: s.service.name, "outbox backlog": s.health.outboxPending, "oldest pending (s)": s.health.oldestPendingSeconds ?? "-",
      "outbox failed": s.health.outboxFailed, "open failures": s.health.openFailures, "DLT last 5 min": s.health.deadLettersLast5m,
      "DLT last hour": s.health.deadLettersLast1h, state: "ok"
    }), ["service", "outbox backlog", "oldest pending (s)", "outbox failed", "open failures", "DLT last 5 min", "DLT last hour", "state"], {
      cellClass: (r, c) => c === "state" && r.state !== "ok" ? "down" : ((c === "open failures" || c === "outbox failed") && r[c] > 0 ? "warn" : "")
    })
    table($("groups"), tagged("groups"),
      ["service", "topic", "consumerGroup", "errorTag", "eventType", "count", "firstSeen", "lastSeen", "sampleError"], { pick: pickGroup })
    table($("outbox"), tagged("outbox"), ["service", "id", "topic", "messageKey", "eventType", "eventId", "attempts", "waiting", "lastError", "createdAt"], {
      actions: (r, i) => "<button class='retry' data-i='" + i + "'>Retry</button><button class='skip' data-i='" + i + "'>Skip</button>",
      bind: (el, rows) => {
        el.querySelectorAll("button.retry").forEach((b) => b.onclick = () => askOutbox("retry", rows[Number(b.dataset.i)]))
        el.querySelectorAll("button.skip").forEach((b) => b.onclick = () => askOutbox("skip", rows[Number(b.dataset.i)]))
      }
    })
    table($("operations"), tagged("operations").sort((a, b) => String(b.startedAt).localeCompare(String(a.startedAt))).slice(0, 100),
      ["service", "id", "action", "actor", "startedAt", "status", "progress", "result"])
    $("message").textContent = shown.filter((s) => s.error !== undefined).map((s) => s.service.name + ": " + s.error).join("; ")
  } catch (e) { $("message").textContent = e.message }
}
async function pickGroup(g) {
  const selection = { topic: g.topic, consumerGroup: g.consumerGroup, errorTag: g.errorTag }
  if (g.eventType) selection.eventType = g.eventType
  current = { service: serviceOf(g.service), selection }
  $("failuresOf").textContent = "of " + g.service + ": " + g.topic + " / " + g.consumerGroup + " / " + g.errorTag
  try {
    table($("failures"), await api(current.service, "/ops/failures" + query(selection)),
      ["id", "key", "eventId", "errorMessage", "attempts", "createdAt"], { pick: pickFailure })
    $("actions").innerHTML = "<button id='dry'>Dry-run redrive of this group</button><span id='dryResult'></span>"
    $("dry").onclick = dryRun
  } catch (e) { $("message").textContent = e.message }
}
async function pickFailure(f) {
  try {
    const d = await api(current.service, "/ops/failures/" + f.id)
    $("detail").innerHTML = "<p>" + esc(current.service.name) + " <b>" + esc(d.errorTag) + "</b>: " + esc(d.errorMessage) + " — " + esc(d.attempts) +
      " attempts, trace " + esc(d.traceId ?? "-") + "</p><h3>Headers</h3><pre id='headers'>" + esc(JSON.stringify(d.headers, null, 2)) +
      "</pre><h3>Payload</h3><pre>" + esc(JSON.stringify(d.payload, null, 2)) + "</pre>" +
      (d.errorStack ? "<h3>Stack</h3><pre>" + esc(d.errorStack) + "</pre>" : "")
  } catch (e) { $("message").textContent = e.message }
}
async function dryRun() {
  const { service, selection } = current
  try {
    const dry = await api(service, "/ops/redrive/dry-run", { selection })
    $("dryResult").innerHTML = " " + esc(service.name) + ": <span id='dryCount'>" + esc(dry.count) + "</span> failures to " +
      esc(dry.targetTopics.map((t) => t.topic + " (" + t.count + ")").join(", ")) + ", cutoff " + esc(dry.cutoff) +
      " <label>rate/s <input id='rate' size='4' value='50'></label> <label>canary <input id='canary' size='3' value='1'></label>" +
      " <button id='confirm'>Confirm redrive</button>"
    $("confirm").onclick = async () => {
      try {
        const started = await api(service, "/ops/redrive", { dryRunId: dry.dryRunId, expectedCount: dry.count,
          ratePerSecond: Number($("rate").value) || undefined, canary: Number($("canary").value) || undefined })
        $("dryResult").textContent = " redrive " + started.operationId + " started"
        setTimeout(refresh, 500)
      } catch (e) { $("message").textContent = e.message }
    }
  } catch (e) { $("message").textContent = e.message }
}
// Retry and skip change what gets published: each asks first, naming the row.
function askOutbox(action, row) {
  const service = serviceOf(row.service)
  $("outboxConfirm").innerHTML = "<span id='outboxQuestion'>" + (action === "retry" ? "Publish again" : "Give up for good on") +
    " outbox row " + esc(row.id) + " of " + esc(row.service) + " (" + esc(row.topic) + ", key " + esc(row.messageKey) + ", " + esc(row.eventType) + ")? " +
    (action === "retry" ? "The " + row.waiting + " later rows of its key wait behind it." : "Its event is never published; the " + row.waiting + " later rows of its key go on.") +
    "</span> <button id='outboxGo'>Confirm " + action + "</button><button id='outboxCancel'>Cancel</button>"
  $("outboxCancel").onclick = () => { $("outboxConfirm").innerHTML = "" }
  $("outboxGo").onclick = async () => {
    try {
      const done = await api(service, "/ops/outbox/" + action, { ids: [row.id] })
      $("outboxConfirm").innerHTML = "<span id='outboxResult'>" + esc(action) + " of row " + esc(row.id) + " (" + esc(row.service) + "): " +
        esc(done.count) + " changed, operation " + esc(done.operationId) + "</span>"
      refresh()
    } catch (e) { $("message").textContent = e.message }
  }
}
$("connect").onclick = async () => {
  sessionStorage.setItem("kpipe-token", $("token").value || sessionStorage.getItem("kpipe-token") || "")
  try { await loadServices() } catch (e) { $("message").textContent = e.message; return }
  refresh()
}
$("service").onchange = refresh
if (sessionStorage.getItem("kpipe-token")) $("connect").onclick()
setInterval(() => { if (sessionStorage.getItem("kpipe-token")) refresh() }, 5000)
</script>
</body>
</html>
`
