// The ops console: one self-contained page over the ops API (no CDN, works offline). The token is
// kept in sessionStorage and sent as a bearer token.
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
  #health span { display: inline-block; margin-right: 1.2rem; padding: 4px 8px; background: #f3f3f3; border-radius: 4px; }
  pre { background: #f7f7f7; padding: .5rem; max-height: 20rem; overflow: auto; }
  .error { color: #b00; } button { margin-right: .5rem; }
</style>
</head>
<body>
<h1>kpipe ops</h1>
<p><label>Admin token <input id="token" type="password" size="40"></label> <button id="connect">Connect</button>
  <span id="message" class="error"></span></p>
<div id="health"></div>
<h2>Failure groups</h2>
<table id="groups"></table>
<h2>Failures</h2>
<div id="actions"></div>
<table id="failures"></table>
<h2>Failure</h2>
<div id="detail">Pick a failure.</div>
<h2>Operations</h2>
<table id="operations"></table>
<script>
const $ = (id) => document.getElementById(id)
const esc = (v) => String(v ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c])
let selection = {}
async function api(path, body) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: "Bearer " + sessionStorage.getItem("kpipe-token"), "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const json = await response.json().catch(() => ({}))
  if (!response.ok) throw new Error(response.status + " " + (json._tag ?? "") + " " + (json.message ?? ""))
  return json
}
function table(el, rows, columns, onPick) {
  el.innerHTML = "<tr>" + columns.map((c) => "<th>" + esc(c) + "</th>").join("") + "</tr>" +
    rows.map((r, i) => "<tr class='" + (onPick ? "pick" : "") + "' data-i='" + i + "'>" +
      columns.map((c) => "<td>" + esc(typeof r[c] === "object" && r[c] !== null ? JSON.stringify(r[c]) : r[c]) + "</td>").join("") + "</tr>").join("")
  if (onPick) el.querySelectorAll("tr.pick").forEach((tr) => tr.onclick = () => onPick(rows[Number(tr.dataset.i)]))
}
const query = (s) => "?" + new URLSearchParams(Object.entries(s).filter(([, v]) => v != null)).toString()
async function refresh() {
  try {
    const h = await api("/ops/health")
    $("health").innerHTML = [["outbox backlog", h.outboxPending], ["oldest pending (s)", h.oldestPendingSeconds ?? "-"],
      ["outbox failed", h.outboxFailed], ["open failures", h.openFailures], ["DLT last 5 min", h.deadLettersLast5m],
      ["DLT last hour", h.deadLettersLast1h]].map(([k, v]) => "<span>" + esc(k) + ": <b>" + esc(v) + "</b></span>").join("")
    table($("groups"), await api("/ops/failures/groups"),
      ["topic", "consumerGroup", "errorTag", "eventType", "count", "firstSeen", "lastSeen", "sampleError"], pickGroup)
    table($("operations"), await api("/ops/operations"), ["id", "action", "actor", "startedAt", "status", "progress", "result"])
    $("message").textContent = ""
  } catch (e) { $("message").textContent = e.message }
}
async function pickGroup(g) {
  selection = { topic: g.topic, consumerGroup: g.consumerGroup, errorTag: g.errorTag }
  if (g.eventType) selection.eventType = g.eventType
  table($("failures"), await api("/ops/failures" + query(selection)),
    ["id", "key", "eventId", "errorMessage", "attempts", "createdAt"], pickFailure)
  $("actions").innerHTML = "<button id='dry'>Dry-run redrive of this group</button><span id='dryResult'></span>"
  $("dry").onclick = dryRun
}
async function pickFailure(f) {
  const d = await api("/ops/failures/" + f.id)
  $("detail").innerHTML = "<p><b>" + esc(d.errorTag) + "</b>: " + esc(d.errorMessage) + " — " + esc(d.attempts) +
    " attempts, trace " + esc(d.traceId ?? "-") + "</p><h3>Headers</h3><pre id='headers'>" + esc(JSON.stringify(d.headers, null, 2)) +
    "</pre><h3>Payload</h3><pre>" + esc(JSON.stringify(d.payload, null, 2)) + "</pre>" +
    (d.errorStack ? "<h3>Stack</h3><pre>" + esc(d.errorStack) + "</pre>" : "")
}
async function dryRun() {
  try {
    const dry = await api("/ops/redrive/dry-run", { selection })
    $("dryResult").innerHTML = " <span id='dryCount'>" + esc(dry.count) + "</span> failures to " +
      esc(dry.targetTopics.map((t) => t.topic + " (" + t.count + ")").join(", ")) + ", cutoff " + esc(dry.cutoff) +
      " <label>rate/s <input id='rate' size='4' value='50'></label> <label>canary <input id='canary' size='3' value='1'></label>" +
      " <button id='confirm'>Confirm redrive</button>"
    $("confirm").onclick = async () => {
      const started = await api("/ops/redrive", { dryRunId: dry.dryRunId, expectedCount: dry.count,
        ratePerSecond: Number($("rate").value) || undefined, canary: Number($("canary").value) || undefined })
      $("dryResult").textContent = " redrive " + started.operationId + " started"
      setTimeout(refresh, 500)
    }
  } catch (e) { $("message").textContent = e.message }
}
$("connect").onclick = () => { sessionStorage.setItem("kpipe-token", $("token").value); refresh() }
if (sessionStorage.getItem("kpipe-token")) refresh()
setInterval(() => { if (sessionStorage.getItem("kpipe-token")) refresh() }, 5000)
</script>
</body>
</html>
`
