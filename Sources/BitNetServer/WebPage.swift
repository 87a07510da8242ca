import BitNetCore
import BitNetTokenizers
import BitNetFormats
import BitNetInference
/// The chat page served at `/`: plain HTML and JS, streaming answers from `/v1/chat/completions` (fetch + SSE parsing).
enum WebPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bitnet serve</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2129; }
  header { background: #243447; color: #fff; padding: 10px 18px; display: flex; gap: 16px; align-items: baseline; }
  header h1 { font-size: 18px; margin: 0; }
  header span { opacity: .75; font-size: 13px; }
  main { max-width: 820px; margin: 0 auto; padding: 14px; }
  #log { display: flex; flex-direction: column; gap: 10px; min-height: 120px; }
  .msg { padding: 9px 13px; border-radius: 10px; white-space: pre-wrap; max-width: 85%; }
  .user { align-self: flex-end; background: #2f6fde; color: #fff; }
  .assistant { align-self: flex-start; background: #fff; border: 1px solid #d5d9e0; }
  .error { align-self: stretch; background: #fde8e8; border: 1px solid #e5a0a0; color: #8a1c1c; }
  .meta { font-size: 12px; color: #687080; align-self: flex-start; }
  form { display: flex; gap: 8px; margin-top: 14px; }
  textarea { flex: 1; font: inherit; padding: 8px; border-radius: 8px; border: 1px solid #c0c6d0; min-height: 44px; }
  button { font: inherit; padding: 0 18px; border: 0; border-radius: 8px; background: #243447; color: #fff; cursor: pointer; }
  button:disabled { opacity: .5; }
  details { margin-top: 10px; font-size: 13px; }
  details label { display: inline-block; margin: 4px 12px 4px 0; }
  details input { width: 80px; }
  #key { width: 220px; }
</style>
</head>
<body>
<header><h1>bitnet serve</h1><span id="model">model: …</span></header>
<main>
  <div id="log"></div>
  <form id="form">
    <textarea id="input" placeholder="Say something…" autofocus></textarea>
    <button id="send" type="submit">Send</button>
  </form>
  <details>
    <summary>Settings</summary>
    <label>max_tokens <input id="max_tokens" type="number" value="128" min="1"></label>
    <label>temperature <input id="temperature" type="number" value="0.8" step="0.1" min="0" max="2"></label>
    <label>top_p <input id="top_p" type="number" value="0.95" step="0.05" min="0.01" max="1"></label>
    <label>top_k <input id="top_k" type="number" value="40" min="0"></label>
    <label>seed <input id="seed" type="number" value="42"></label>
    <label>API key <input id="key" type="password" placeholder="(only if the server has one)"></label>
  </details>
</main>
<script>
"use strict";
const log = document.getElementById("log");
const history = [];
const keyInput = document.getElementById("key");
keyInput.value = localStorage.getItem("bitnet-key") || "";
keyInput.addEventListener("change", () => localStorage.setItem("bitnet-key", keyInput.value));

function headers() {
  const h = { "Content-Type": "application/json" };
  if (keyInput.value) h["Authorization"] = "Bearer " + keyInput.value;
  return h;
}

function bubble(cls, text) {
  const d = document.createElement("div");
  d.className = "msg " + cls;
  d.textContent = text;
  log.appendChild(d);
  d.scrollIntoView({ block: "end" });
  return d;
}

fetch("/v1/models", { headers: headers() }).then(r => r.json()).then(j => {
  if (j.data && j.data[0]) document.getElementById("model").textContent = "model: " + j.data[0].id;
}).catch(() => {});

// Reads an SSE body: events are separated by a blank line; each "data:" line carries one JSON chunk or [DONE].
async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (line.startsWith("data: ")) yield line.slice(6);
      }
    }
  }
}

async function send(text) {
  history.push({ role: "user", content: text });
  bubble("user", text);
  const out = bubble("assistant", "");
  const num = id => Number(document.getElementById(id).value);
  const body = {
    model: "bitnet", messages: history, stream: true, stream_options: { include_usage: true },
    max_tokens: num("max_tokens"), temperature: num("temperature"), top_p: num("top_p"), top_k: num("top_k"), seed: num("seed"),
  };
  const t0 = performance.now();
  const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!r.ok) {
    const j = await r.json().catch(() => ({ error: { message: r.statusText } }));
    out.remove();
    bubble("error", r.status + ": " + j.error.message);
    history.pop();
    return;
  }
  let answer = "", usage = null, finish = null;
  for await (const data of sseEvents(r)) {
    if (data === "[DONE]") break;
    const chunk = JSON.parse(data);
    if (chunk.error) { bubble("error", chunk.error.message); break; }
    if (chunk.usage) usage = chunk.usage;
    const c = chunk.choices && chunk.choices[0];
    if (!c) continue;
    if (c.delta && c.delta.content) { answer += c.delta.content; out.textContent = answer; }
    if (c.finish_reason) finish = c.finish_reason;
  }
  history.push({ role: "assistant", content: answer });
  const secs = (performance.now() - t0) / 1000;
  const m = document.createElement("div");
  m.className = "meta";
  m.textContent = (usage ? usage.completion_tokens + " tokens, " + (usage.completion_tokens / secs).toFixed(1) + " tokens/s, " : "")
    + "finish: " + finish;
  log.appendChild(m);
}

document.getElementById("form").addEventListener("submit", async ev => {
  ev.preventDefault();
  const input = document.getElementById("input");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  const button = document.getElementById("send");
  button.disabled = true;
  try { await send(text); } catch (e) { bubble("error", String(e)); }
  finally { button.disabled = false; }
});
document.getElementById("input").addEventListener("keydown", ev => {
  if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); document.getElementById("form").requestSubmit(); }
});
// ?q=TEXT sends TEXT on load (used to check the page in a headless browser).
const q = new URLSearchParams(location.search).get("q");
if (q) send(q);
</script>
</body>
</html>
"""#
}
