"use strict";
const $ = (id) => document.getElementById(id);
let items = [];
let selectedKey = null;
$("token").value = sessionStorage.getItem("offpath-review-token") || "";

function headers() {
  sessionStorage.setItem("offpath-review-token", $("token").value);
  return { "Authorization": "Bearer " + $("token").value, "Content-Type": "application/json" };
}

// The periodic refresh skips while a note is being written (it would wipe it).
function writing() {
  return [...document.querySelectorAll(".note")].some((n) => n.value || n === document.activeElement);
}

async function load() {
  const query = new URLSearchParams();
  for (const f of ["status", "kind", "tenant", "room"]) { if ($(f).value) query.set(f, $(f).value); }
  const response = await fetch("/api/queue?" + query, { headers: headers() });
  if (!response.ok) { $("error").textContent = (await response.json()).error; return; }
  $("error").textContent = "";
  items = await response.json();
  const total = Number(response.headers.get("X-Offpath-Total") || items.length);
  $("shown").textContent = total > items.length ? `showing the first ${items.length} of ${total}` : "";
  if (!items.some((e) => e.key === selectedKey)) selectedKey = items.length ? items[0].key : null;
  render();
}

function render() {
  const queue = $("queue");
  queue.replaceChildren();
  if (items.length === 0) { queue.textContent = "Nothing to review."; return; }
  items.forEach((entry) => {
    const v = entry.item.verdict;
    const div = document.createElement("div");
    div.className = "item" + (entry.key === selectedKey ? " selected" : "");
    div.dataset.key = entry.key;
    const scores = Object.entries(v.scores).map(([k, s]) => k + " " + s.toFixed(2)).join(", ");
    const age = Math.round((Date.now() - entry.item.queued_at_ms) / 60000);
    const meta = document.createElement("div");
    meta.className = "meta";
    const kind = document.createElement("span");
    kind.className = "kind " + entry.item.kind;
    kind.textContent = entry.item.kind;
    meta.append(kind, ` ${v.tenant} / #${v.room} · ${v.sender} · ${new Date(entry.item.sent_at_ms).toLocaleString()} · queued ${age} min ago`);
    // The messages the room showed before it, as the sender's gateway saw them.
    const context = document.createElement("div");
    context.className = "context";
    for (const m of entry.item.context || []) {
      const line = document.createElement("div");
      line.textContent = `${m.sender}: ${m.text}`;
      line.title = new Date(m.sent_at_ms).toLocaleString();
      context.append(line);
    }
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = entry.item.text;
    const report = document.createElement("div");
    report.className = "report";
    const r = entry.item.report;
    if (r) {
      report.textContent = `reported by ${r.reporter}` + (r.reason ? `: "${r.reason}"` : "") +
        (entry.reports > 1 ? ` and ${entry.reports - 1} more (${entry.reporters.length} members)` : "") + " · ";
      const source = document.createElement("span");
      const sources = {
        gateway: "text as the server relayed it",
        franked: "end-to-end encrypted; text proven by the sender's commitment (cleaned of invisible characters)",
        reporter: "end-to-end encrypted; text as the reporter submitted it, NOT verified",
        mismatch: "end-to-end encrypted; the reporter's text and key do NOT open the sender's commitment: one of them lied",
      };
      source.textContent = sources[r.text_source] || r.text_source;
      if (r.text_source === "reporter" || r.text_source === "mismatch") source.className = "unverified";
      report.append(source);
    }
    const detail = document.createElement("div");
    detail.className = "meta";
    detail.textContent = `model ${v.action} (${scores})` + (v.policy ? ` · policy ${v.policy.name}@${v.policy.version}` : "") + ` · ${v.model.name}@${v.model.version}`;
    const status = document.createElement("div");
    status.className = "status";
    status.textContent = entry.decisions.map((d) => `${d.decision} by ${d.reviewer}` + (d.note ? ` (${d.note})` : "")).join(" → ");
    const note = document.createElement("input");
    note.placeholder = "note (why)";
    note.className = "note";
    const actions = document.createElement("div");
    actions.className = "actions";
    // The server never had an end-to-end-encrypted message's text: it cannot restore it.
    const decisions = r && r.text_source !== "gateway"
      ? ["remove", "dismiss", "escalate"] : ["remove", "restore", "dismiss", "escalate"];
    for (const decision of decisions) {
      const button = document.createElement("button");
      button.textContent = decision;
      button.dataset.decision = decision;
      button.onclick = () => decide(entry.key, decision, note.value);
      actions.append(button);
    }
    actions.append(note);
    if (context.childElementCount) div.append(meta, context, text, report, detail, status, actions);
    else div.append(meta, text, report, detail, status, actions);
    div.onclick = (event) => {
      if (event.target.tagName === "INPUT" || event.target.tagName === "BUTTON") return;
      selectedKey = entry.key;
      render();
    };
    queue.append(div);
  });
}

async function decide(key, decision, note) {
  const response = await fetch("/api/decide", {
    method: "POST", headers: headers(),
    body: JSON.stringify({ key, decision, note: note || null }),
  });
  if (!response.ok) { $("error").textContent = (await response.json()).error; return; }
  await load();
}

// One-key decisions on the selected item; never with a modifier (Ctrl+R is a reload), never
// while typing in a field. Remove and restore change the room: they ask first.
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (["INPUT", "SELECT", "TEXTAREA", "BUTTON"].includes(event.target.tagName)) return;
  const index = items.findIndex((e) => e.key === selectedKey);
  const keys = { r: "remove", s: "restore", d: "dismiss", e: "escalate" };
  if (event.key === "j" && index + 1 < items.length) { selectedKey = items[index + 1].key; render(); }
  else if (event.key === "k" && index > 0) { selectedKey = items[index - 1].key; render(); }
  else if (index >= 0 && keys[event.key]) {
    const decision = keys[event.key];
    const entry = items[index];
    if ((decision === "remove" || decision === "restore") &&
        !confirm(`${decision}: "${entry.item.text.slice(0, 80)}"?`)) return;
    const note = document.querySelector(".item.selected .note");
    decide(entry.key, decision, note ? note.value : "");
  }
});
for (const f of ["token", "status", "kind", "tenant", "room"]) { $(f).addEventListener("change", load); }
load();
setInterval(() => { if (!writing()) load(); }, 5000);
