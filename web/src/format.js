// format.js — how values from the API read on screen: ages, numbers, reasons.
// Pure functions, no DOM.

/** "3 min", "5 h", "2 d" since an RFC 3339 time (now: milliseconds, for tests). */
export function age(rfc3339, now = Date.now()) {
  const then = Date.parse(rfc3339);
  if (Number.isNaN(then)) return '?';
  const s = Math.max(0, Math.round((now - then) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

/** A number with `digits` significant digits, or an en dash when absent. */
export function num(value, digits = 3) {
  if (value == null || Number.isNaN(value)) return '–';
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (abs >= 1e-3 && abs < 1e6) return Number(value.toPrecision(digits)).toString();
  return value.toExponential(digits - 1);
}

/** "out_of_distribution" → "out of distribution". */
export const words = (code) => String(code ?? '').replaceAll('_', ' ');

/** One reason or crossed threshold: "out of distribution: ood_score 12.1 > 9.74". */
export function reason(r, labelName = (v) => `label ${v}`) {
  const what = r.label == null ? words(r.code) : `${words(r.code)} (${words(labelName(r.label))})`;
  if (r.metric == null) return what;
  const value = r.value == null ? 'unknown' : num(r.value);
  const threshold = r.threshold == null ? '' : ` vs ${num(r.threshold)}`;
  return `${what}: ${r.metric} ${value}${threshold}`;
}

/** CSS colour of an API label colour [r, g, b] (0–255). */
export const rgb = (color) => `rgb(${color.map((c) => Math.round(c)).join(', ')})`;

/** A study key short enough for one line: DICOM UIDs and content hashes run to 64 characters. */
export const shortKey = (key) => (key.length > 20 ? `${key.slice(0, 16)}…` : key);
