"use strict";
const $ = (id) => document.getElementById(id);
const FILTERS = ["status", "kind", "tenant", "room"];
let items = [];
let total = 0;
let selectedKey = null;
let signedIn = false;
// The last answer drawn (with its filters) and when: a refresh that brings nothing new
// draws nothing.
let lastAnswer = null;
let lastDrawn = 0;
// Each card's note, by item key: kept across refreshes, sent with that card's decision only.
const notes = new Map();
// A remove or restore waiting for its confirmation: { key, decision }.
let pending = null;
// What the queue's record holds of a sender, by tenant and sender: { at, entries, total }.
const records = new Map();
$("token").value = sessionStorage.getItem("offpath-review-token") || "";

function headers() {
  return { "Authorization": "Bearer " + $("token").value, "Content-Type": "application/json" };
}

// Why the console gave no answer, in words a reviewer can act on.
async function refusal(response) {
  let message = "";
  try { message = (await response.json()).error; } catch (_) { message = ""; }
  if (response.status === 401) {
    signedIn = false;
    return $("token").value
      ? "That reviewer token was refused: check it and sign in again."
      : "Enter your reviewer token and sign in.";
  }
  if (response.status === 429) {
    const wait = response.headers.get("Retry-After");
    return "Too many failed sign-ins from this address: try again " + (wait ? `in ${wait} s.` : "later.");
  }
  return message || `The console answered ${response.status}.`;
}

async function load() {
  const query = new URLSearchParams();
  for (const f of FILTERS) { if ($(f).value) query.set(f, $(f).value); }
  let response;
  try {
    response = await fetch("/api/queue?" + query, { headers: headers() });
  } catch (err) {
    $("error").textContent = "The console cannot be reached: " + err.message;
    return;
  }
  if (!response.ok) {
    $("error").textContent = await refusal(response);
    if (!signedIn) { items = []; total = 0; render(); }
    return;
  }
  sessionStorage.setItem("offpath-review-token", $("token").value);
  $("error").textContent = "";
  const text = await response.text();
  const fresh = query + "\u0000" + text + "\u0000" + response.headers.get("X-Offpath-Total");
  // A refresh that brings nothing new leaves the cards as they are (a button under the
  // pointer stays the same button), but once a minute the ages are redrawn.
  if (signedIn && fresh === lastAnswer && Date.now() - lastDrawn < 60000) return;
  lastAnswer = fresh;
  signedIn = true;
  items = JSON.parse(text);
  total = Number(response.headers.get("X-Offpath-Total") || items.length);
  if (!items.some((e) => e.key === selectedKey)) selectedKey = items.length ? items[0].key : null;
  if (pending && !items.some((e) => e.key === pending.key)) pending = null;
  render();
}


const when = (ms) => new Date(ms).toLocaleString();
const shorten = (text, n) => (text.length > n ? text.slice(0, n) + "…" : text);
const element = (tag, className, text) => {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
};

function render() {
  lastDrawn = Date.now();
  const word = { open: "open ", decided: "decided ", all: "" }[$("status").value] ?? "";
  $("count").textContent = signedIn ? `${total} ${word}item${total === 1 ? "" : "s"}` : "";
  $("shown").textContent = total > items.length ? `showing the first ${items.length} of ${total}` : "";
  const queue = $("queue");
  queue.replaceChildren();
  if (!signedIn) return;
  if (items.length === 0) { queue.textContent = "Nothing to review."; return; }
  for (const entry of items) queue.append(card(entry));
}

// When and by whom the item was queued and decided, one step a line.
function trail(entry) {
  const list = element("ol", "trail");
  list.append(element("li", "", `${when(entry.item.queued_at_ms)} · queued (${entry.item.kind})`));
  for (const d of entry.decisions) {
    list.append(element("li", "decision",
      `${when(d.decided_at_ms)} · ${d.decision} by ${d.reviewer}` + (d.note ? ` — "${d.note}"` : "")));
  }
  return list;
}

// The message text, the part the deciding category scored highest on (the verdict's
// `span`, bytes of the UTF-8 text) marked when it is a part of it on character boundaries.
function marked(text, span) {
  const div = element("div", "text");
  const bytes = new TextEncoder().encode(text);
  const decode = (from, to) => new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(from, to));
  let parts = null;
  if (span && Number.isFinite(span.score) && span.start >= 0 && span.start < span.end &&
      span.end <= bytes.length) {
    try {
      parts = [decode(0, span.start), decode(span.start, span.end), decode(span.end, bytes.length)];
    } catch {
      parts = null;
    }
  }
  if (!parts) {
    div.textContent = text;
    return div;
  }
  const mark = element("mark", "span", parts[1]);
  mark.title = `the category scored ${span.score.toFixed(2)} on this part alone`;
  div.append(parts[0], mark, parts[2]);
  return div;
}

function card(entry) {
  const v = entry.item.verdict;
  const div = element("div", "item" + (entry.key === selectedKey ? " selected" : ""));
  div.dataset.key = entry.key;
  const scores = Object.entries(v.scores).map(([k, s]) => k + " " + s.toFixed(2)).join(", ");
  const age = Math.round((Date.now() - entry.item.queued_at_ms) / 60000);
  const meta = element("div", "meta");
  meta.append(element("span", "kind " + entry.item.kind, entry.item.kind));
  // The category that decided the model's verdict (e.g. harassment, threat, spam).
  if (v.category) meta.append(" ", element("span", "category", v.category.replace(/_/g, " ")));
  meta.append(` ${v.tenant} / #${v.room} · ${v.sender} · ${when(entry.item.sent_at_ms)} · queued ${age} min ago`);
  div.append(meta);
  // The messages the room showed before it, as the sender's gateway saw them.
  if ((entry.item.context || []).length) {
    const context = element("div", "context");
    for (const m of entry.item.context) {
      const line = element("div", "", `${m.sender}: ${m.text}`);
      line.title = when(m.sent_at_ms);
      context.append(line);
    }
    div.append(context);
  }
  div.append(marked(entry.item.text, v.span));
  const r = entry.item.report;
  if (r) {
    const report = element("div", "report", `reported by ${r.reporter}` + (r.reason ? `: "${r.reason}"` : "") +
      (entry.reports > 1 ? ` and ${entry.reports - 1} more (${entry.reporters.length} members)` : "") + " · ");
    const sources = {
      gateway: "text as the server relayed it",
      franked: "end-to-end encrypted; text proven by the sender's commitment (cleaned of invisible characters)",
      reporter: "end-to-end encrypted; text as the reporter submitted it, NOT verified",
      mismatch: "end-to-end encrypted; the reporter's text and key do NOT open the sender's commitment: one of them lied",
    };
    const source = element("span", "", sources[r.text_source] || r.text_source);
    if (r.text_source === "reporter" || r.text_source === "mismatch") source.className = "unverified";
    report.append(source);
    div.append(report);
  }
  const by = v.rule ? `rule ${v.rule}` : "model";
  // What the rule counted, the campaign, and a block the brake held (contract v1.5).
  const counted = v.counts ? ` [${Object.entries(v.counts).map(([name, n]) => `${name} ${n}`).join(", ")}]` : "";
  const why = (v.campaign ? ` · campaign ${v.campaign}` : "") +
    (v.reason === "brake" ? " · held by the brake: the models would have removed it" : "");
  div.append(element("div", "meta", `${by} ${v.action}${v.category ? ": " + v.category : ""}${scores ? ` (${scores})` : ""}` +
    counted + why + (v.policy ? ` · policy ${v.policy.name}@${v.policy.version}` : "") + ` · ${v.model.name}@${v.model.version}`));
  div.append(trail(entry));
  const actions = element("div", "actions");
  // The server never had an end-to-end-encrypted message's text: it cannot restore it.
  const decisions = r && r.text_source !== "gateway"
    ? ["remove", "dismiss", "escalate"] : ["remove", "restore", "dismiss", "escalate"];
  for (const decision of decisions) {
    const button = element("button", "", decision);
    button.type = "button";
    button.dataset.decision = decision;
    button.onclick = () => act(entry, decision);
    actions.append(button);
  }
  const note = element("input", "note");
  note.placeholder = "note (why)";
  note.setAttribute("aria-label", `note on ${v.sender}'s message`);
  note.value = notes.get(entry.key) || "";
  note.oninput = () => notes.set(entry.key, note.value);
  note.onfocus = () => select(entry.key, false);
  note.onblur = () => { $("paused").textContent = ""; };
  actions.append(note);
  div.append(actions);
  if (pending && pending.key === entry.key) div.append(confirmation(entry));
  if (entry.key === selectedKey) {
    const history = element("div", "history");
    div.append(history);
    showRecord(entry, history);
  }
  div.onclick = (event) => {
    if (["INPUT", "BUTTON"].includes(event.target.tagName)) return;
    select(entry.key, true);
  };
  return div;
}

function confirmation(entry) {
  const box = element("div", "confirm");
  box.setAttribute("role", "alertdialog");
  const what = pending.decision === "remove" ? "Remove this message from the room?" : "Restore this message to the room?";
  const yes = element("button", "", `confirm ${pending.decision}`);
  yes.type = "button";
  yes.dataset.confirm = pending.decision;
  yes.onclick = () => decide(entry, pending.decision);
  const no = element("button", "", "cancel");
  no.type = "button";
  no.onclick = () => { pending = null; render(); };
  box.append(element("span", "", what + " "), yes, no);
  return box;
}

function select(key, rerender) {
  if (selectedKey === key) return;
  selectedKey = key;
  if (rerender) { render(); return; }
  for (const div of document.querySelectorAll("#queue .item")) {
    div.classList.toggle("selected", div.dataset.key === key);
  }
}

// A button or a key: remove and restore change the room, so both ask first.
function act(entry, decision) {
  if ((decision === "remove" || decision === "restore") &&
      !(pending && pending.key === entry.key && pending.decision === decision)) {
    pending = { key: entry.key, decision };
    selectedKey = entry.key;
    render();
    const yes = document.querySelector(".item.selected [data-confirm]");
    if (yes) yes.focus();
    return;
  }
  decide(entry, decision);
}

async function decide(entry, decision) {
  const response = await fetch("/api/decide", {
    method: "POST", headers: headers(),
    body: JSON.stringify({ key: entry.key, decision, note: notes.get(entry.key) || null }),
  });
  if (!response.ok) { $("error").textContent = await refusal(response); return; }
  notes.delete(entry.key);
  pending = null;
  records.clear();
  await load();
}

// The sender's other items in the queue's record (flags, blocks the policy queues, reports
// against them) with what reviewers decided, newest first.
async function record(entry) {
  const v = entry.item.verdict;
  const id = v.tenant + "\u0000" + v.sender;
  const cached = records.get(id);
  if (cached && Date.now() - cached.at < 10000) return cached;
  const query = new URLSearchParams({
    status: "all", tenant: v.tenant, sender: v.sender, order: "newest", limit: "11",
  });
  const response = await fetch("/api/queue?" + query, { headers: headers() });
  if (!response.ok) return null;
  const fresh = {
    at: Date.now(),
    entries: await response.json(),
    total: Number(response.headers.get("X-Offpath-Total") || 0),
  };
  records.set(id, fresh);
  return fresh;
}

async function showRecord(entry, box) {
  const found = await record(entry);
  if (!found) return;
  const sender = entry.item.verdict.sender;
  const others = found.entries.filter((e) => e.key !== entry.key).slice(0, 10);
  const count = found.total - (found.entries.some((e) => e.key === entry.key) ? 1 : 0);
  const title = element("div", "meta", count > 0
    ? `${sender}'s other items in the queue's record (${count}; newest first):`
    : `${sender} has no other item in the queue's record.`);
  const list = element("ul", "record");
  for (const e of others) {
    const decided = e.decisions.length
      ? e.decisions.map((d) => `${d.decision} by ${d.reviewer} ${when(d.decided_at_ms)}`).join(" → ")
      : e.status;
    list.append(element("li", "",
      `${when(e.item.sent_at_ms)} · ${e.item.kind} · model ${e.item.verdict.action} · #${e.item.verdict.room} · "${shorten(e.item.text, 120)}" · ${decided}`));
  }
  box.replaceChildren(title, list);
  const verdicts = await recentVerdicts(entry);
  if (verdicts && verdicts.kept) {
    const heading = element("div", "meta", verdicts.recent.length
      ? `${sender}'s recent verdicts (blocks, flags, decisions; newest first):`
      : `${sender} has no recent block, flag or decision since the console started.`);
    const lines = element("ul", "record verdicts");
    for (const r of verdicts.recent) {
      const scores = r.top.map(([k, s]) => `${k} ${s.toFixed(2)}`).join(", ");
      lines.append(element("li", "",
        `${when(r.at_ms)} · ${r.reviewer ? `${r.action} by ${r.reviewer}` : `model ${r.action}`} · #${r.room}` +
        (scores ? ` (${scores})` : "")));
    }
    box.append(heading, lines);
  }
}

// What the moderators decided on the sender's recent messages (blocked ones included, which
// reach the queue only when a policy reviews blocks); verdicts carry no text.
async function recentVerdicts(entry) {
  const v = entry.item.verdict;
  const query = new URLSearchParams({ tenant: v.tenant, sender: v.sender });
  const response = await fetch("/api/sender?" + query, { headers: headers() });
  return response.ok ? response.json() : null;
}

// One-key decisions on the selected item; never with a modifier (Ctrl+R is a reload), never
// while typing in a field.
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (pending && event.key === "Escape") { pending = null; render(); return; }
  if (["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName)) return;
  const index = items.findIndex((e) => e.key === selectedKey);
  if (pending && (event.key === "y" || (event.key === "Enter" && event.target.tagName !== "BUTTON"))) {
    const entry = items.find((e) => e.key === pending.key);
    if (entry) decide(entry, pending.decision);
    return;
  }
  if (event.target.tagName === "BUTTON") return;
  const keys = { r: "remove", s: "restore", d: "dismiss", e: "escalate" };
  if (event.key === "j" && index + 1 < items.length) select(items[index + 1].key, true);
  else if (event.key === "k" && index > 0) select(items[index - 1].key, true);
  else if (index >= 0 && keys[event.key]) act(items[index], keys[event.key]);
});
$("login").addEventListener("submit", (event) => { event.preventDefault(); load(); });
for (const f of FILTERS) { $(f).addEventListener("change", load); }
if ($("token").value) load(); else $("error").textContent = "Enter your reviewer token and sign in.";
// A refresh re-draws the cards: it waits while a note field has the cursor (the note itself
// is kept either way), and says so.
setInterval(() => {
  const typing = document.activeElement && document.activeElement.classList.contains("note");
  $("paused").textContent = typing ? "Auto-refresh waits while you write a note." : "";
  if (!typing) load();
}, 5000);
