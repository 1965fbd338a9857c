// Small helpers every part of the page uses: elements, formatting, the API key, errors.
// Everything from the API is put in the page as text, never as HTML.

export const $ = (sel) => document.querySelector(sel);

export function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  if (text !== undefined) e.textContent = text;
  return e;
}

export function svgEl(tag, attrs = {}, text) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

export const png = (b64) => "data:image/png;base64," + b64;

export const SERIES = 8;  // colours (style.css .s0-.s7); markers cycle through 4 shapes
export const MARKERS = ["circles", "squares", "triangles", "diamonds"];
export const seriesClass = (k) => "s" + (k % SERIES);

export function fmt(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en");
  return Number(x.toPrecision(digits)).toString();
}

export function fmtParams(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " k";
  return String(n);
}

// Sent only when the user typed a key (servers with FRAMECAST_API_KEYS answer 401 without one).
export function authHeaders() {
  const key = $("#api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

export function showError(message) {
  const box = $("#error");
  box.replaceChildren(el("strong", {}, "That did not work:"), document.createTextNode(message));
  box.hidden = false;
}

export function clearError() {
  $("#error").hidden = true;
  $("#error").textContent = "";
}

// The API answers errors as {"error", "message", "status"}; anything else still gets a message.
export async function apiError(resp) {
  let text = "";
  try {
    text = await resp.text();
    const body = JSON.parse(text);
    if (body && body.message) return `${body.message} (HTTP ${resp.status} ${body.error || ""})`.trim();
    if (body && body.detail) {
      const detail = Array.isArray(body.detail)
        ? body.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ")
        : String(body.detail);
      return `${detail} (HTTP ${resp.status})`;
    }
  } catch (e) { /* not JSON */ }
  return `The server answered HTTP ${resp.status}${text ? ": " + text.slice(0, 300) : ""}`;
}
