/** Small SVG line charts, one per metric, drawn with DOM calls (no inline markup or styles). */

const NS = "http://www.w3.org/2000/svg";
const W = 260;
const H = 120;
const PAD = { left: 44, right: 10, top: 10, bottom: 22 };

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * Draws the numeric metrics of `points` ({step, metrics}) into `box`, one chart per metric
 * (their scales differ too much to share an axis).
 */
export function drawCharts(box, points) {
  const names = [];
  for (const p of points) {
    for (const [k, v] of Object.entries(p.metrics ?? {})) {
      if (typeof v === "number" && Number.isFinite(v) && !names.includes(k)) names.push(k);
    }
  }
  if (!names.length) {
    const empty = document.createElement("p");
    empty.className = "message";
    empty.textContent = "No metrics reported yet.";
    box.replaceChildren(empty);
    return;
  }
  box.replaceChildren(...names.slice(0, 6).map((name, i) => chart(name, points, i)));
}

function chart(name, points, index) {
  const data = points
    .map((p, i) => ({ x: p.step ?? i + 1, y: p.metrics?.[name] }))
    .filter((d) => typeof d.y === "number" && Number.isFinite(d.y));
  const xs = data.map((d) => d.x);
  const ys = data.map((d) => d.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) [y0, y1] = [y0 - 1, y1 + 1];
  const sx = (x) =>
    PAD.left + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const sy = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const last = data.at(-1);
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    class: `chart-svg c${index}`,
    role: "img",
    "aria-label": `${name} over ${data.length} steps, last ${fmt(last.y)}`,
  });
  root.append(
    svg("title", {}, name),
    svg("line", {
      x1: PAD.left,
      y1: H - PAD.bottom,
      x2: W - PAD.right,
      y2: H - PAD.bottom,
      class: "axis",
    }),
    svg("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom, class: "axis" }),
    svg("text", { x: PAD.left - 4, y: PAD.top + 8, class: "tick end" }, fmt(y1)),
    svg("text", { x: PAD.left - 4, y: H - PAD.bottom, class: "tick end" }, fmt(y0)),
    svg("text", { x: PAD.left, y: H - 6, class: "tick" }, `step ${x0}`),
    svg("text", { x: W - PAD.right, y: H - 6, class: "tick end" }, `${x1}`),
    svg("polyline", {
      points: data.map((d) => `${sx(d.x).toFixed(1)},${sy(d.y).toFixed(1)}`).join(" "),
      class: "line",
    }),
    svg("circle", { cx: sx(last.x), cy: sy(last.y), r: 3, class: "dot" }),
  );
  const figure = document.createElement("div");
  figure.className = "metric-chart";
  const label = document.createElement("div");
  label.className = "metric-name";
  label.textContent = `${name}: ${fmt(last.y)}`;
  figure.append(label, root);
  return figure;
}

function fmt(v) {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3);
}
