// The bias-derivative page: every number comes from this service's own API.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (selector) => document.querySelector(selector);
const show = (value) => (Array.isArray(value) ? value.map(String).join(", ") : String(value));

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { ok: response.ok, body: await response.json() };
}

function debounce(fn, ms) {
  let timer;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}

// A field's text as the JSON the service expects: a number, a list of numbers, or, when it
// is neither, the text itself, so that the service's own message explains what is wrong.
function parseValue(text) {
  const trimmed = text.trim();
  if (trimmed.includes(",")) {
    const items = trimmed.split(",").map((part) => part.trim());
    return items.every((item) => item !== "" && Number.isFinite(Number(item)))
      ? items.map(Number) : trimmed;
  }
  return trimmed !== "" && Number.isFinite(Number(trimmed)) ? Number(trimmed) : trimmed;
}

function showErrors(problem, fieldPrefix, generalId) {
  document.querySelectorAll(`[id^="${fieldPrefix}"]`).forEach((el) => { el.textContent = ""; });
  $(generalId).textContent = "";
  if (!problem) return;
  const errors = problem.errors || {};
  let placed = false;
  for (const [field, messages] of Object.entries(errors)) {
    const target = document.getElementById(fieldPrefix + field.split(".")[0]);
    if (target) { target.textContent = messages.join(" "); placed = true; }
  }
  if (!placed) $(generalId).textContent = problem.detail;
}

// ---------------------------------------------------------------- one neuron

const NEURON_FIELDS = ["x", "w", "b", "y", "learning_rate", "steps"];

function neuronRequest() {
  const body = { activation: $("#activation").value, loss: $("#loss").value,
                 curve_points: 81, curve_span: 2.0 };
  for (const name of NEURON_FIELDS) body[name] = parseValue($("#" + name).value);
  return body;
}

async function updateNeuron() {
  const { ok, body } = await post("/v1/neuron", neuronRequest());
  if (!ok) { showErrors(body, "err-", "#err-neuron"); return; }
  showErrors(null, "err-", "#err-neuron");
  for (const key of ["z", "a", "loss", "dL_da", "da_dz", "dz_db", "dL_dz", "dL_db",
                     "numerical_dL_db", "dL_dw", "b_next", "w_next"]) {
    $(`[data-testid="${key}"]`).textContent = show(body[key]);
  }
  drawBars(body);
  drawCurve(body);
}

function el(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawBars(terms) {
  const svg = $("#bars");
  svg.replaceChildren();
  const items = [["z", terms.z], ["a", terms.a], ["dL/da", terms.dL_da], ["da/dz", terms.da_dz],
                 ["dL/db", terms.dL_db], ["next b", terms.b_next]];
  const top = 20, bottom = 180, zero = (top + bottom) / 2;
  const largest = Math.max(...items.map(([, v]) => Math.abs(v)), 1e-12);
  const scale = (bottom - top) / 2 / largest;
  svg.append(el("line", { x1: 10, x2: 350, y1: zero, y2: zero, stroke: "#5b6575" }));
  items.forEach(([label, value], i) => {
    const x = 18 + i * 57, height = Math.abs(value) * scale;
    svg.append(el("rect", { x, width: 40, y: value >= 0 ? zero - height : zero,
      height: Math.max(height, 0.5), fill: value >= 0 ? "#1f7a4d" : "#b3261e" }));
    svg.append(el("text", { x: x + 20, y: 205, "text-anchor": "middle", "font-size": 11 }, label));
    svg.append(el("text", { x: x + 20, y: value >= 0 ? zero - height - 4 : zero + height + 12,
      "text-anchor": "middle", "font-size": 10 }, Number(value).toPrecision(3)));
  });
}

function drawCurve(terms) {
  const svg = $("#curve");
  svg.replaceChildren();
  const { b: bs, loss } = terms.loss_curve;
  const path = terms.trajectory ? terms.trajectory : { b: [], loss: [] };
  const allB = bs.concat(path.b), allL = loss.concat(path.loss);
  const [b0, b1] = [Math.min(...allB), Math.max(...allB)];
  const [l0, l1] = [Math.min(...allL), Math.max(...allL)];
  const X = (b) => 40 + ((b - b0) / (b1 - b0 || 1)) * 305;
  const Y = (l) => 210 - ((l - l0) / (l1 - l0 || 1)) * 190;
  svg.append(el("line", { x1: 40, x2: 345, y1: 210, y2: 210, stroke: "#5b6575" }));
  svg.append(el("line", { x1: 40, x2: 40, y1: 15, y2: 210, stroke: "#5b6575" }));
  svg.append(el("text", { x: 345, y: 228, "text-anchor": "end", "font-size": 11 }, "b"));
  svg.append(el("text", { x: 6, y: 16, "font-size": 11 }, "L"));
  svg.append(el("polyline", { fill: "none", stroke: "#2457c5", "stroke-width": 2,
    points: bs.map((b, i) => `${X(b).toFixed(2)},${Y(loss[i]).toFixed(2)}`).join(" ") }));
  // The tangent at the current b: its slope is dL/db.
  const half = (b1 - b0) / 4, slope = terms.dL_db, b = Number($("#b").value);
  const clip = (l) => Math.min(Math.max(Y(l), 5), 215);
  svg.append(el("line", { x1: X(b - half), y1: clip(terms.loss - slope * half),
    x2: X(b + half), y2: clip(terms.loss + slope * half), stroke: "#e08a00", "stroke-width": 2 }));
  path.b.forEach((step, i) => svg.append(el("circle",
    { cx: X(step), cy: Y(path.loss[i]), r: i === 0 ? 5 : 3.5, fill: "#b3261e" })));
  svg.append(el("text", { x: X(b), y: Math.max(Y(terms.loss) - 10, 12), "font-size": 11,
    "text-anchor": "middle" }, `slope dL/db = ${Number(slope).toPrecision(3)}`));
}

// ---------------------------------------------------------------- a batch through one layer

const BATCH = {
  X: [[0.5, -1.0], [1.5, 2.0], [-0.3, 0.8]],
  W: [[0.1, -0.2], [0.4, 0.5]],
  b: [[0.0, 0.1]],
  Y: [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
};

function buildGrid(name) {
  const table = $("#grid-" + name);
  BATCH[name].forEach((row, i) => {
    const tr = document.createElement("tr");
    row.forEach((value, j) => {
      const td = document.createElement("td");
      const input = document.createElement("input");
      input.value = String(value);
      input.inputMode = "decimal";
      input.dataset.testid = `${name}-${i}-${j}`;
      input.setAttribute("aria-label", name === "b" ? `b[${j}]` : `${name}[${i}][${j}]`);
      input.addEventListener("input", debounce(updateBatch, 150));
      td.append(input);
      tr.append(td);
    });
    table.append(tr);
  });
}

function readGrid(name) {
  return [...$("#grid-" + name).rows].map((tr) =>
    [...tr.querySelectorAll("input")].map((input) => parseValue(input.value)));
}

function biasAs(shape, row) {
  if (shape === "flat") return row;
  if (shape === "row") return [row];
  return row.map((value) => [value]);
}

async function updateBatch() {
  const shape = document.querySelector('input[name="bias-shape"]:checked').value;
  const body = {
    inputs: readGrid("X"), targets: readGrid("Y"), loss: $("#batch-loss").value,
    layers: [{ weights: readGrid("W"), biases: biasAs(shape, readGrid("b")[0]),
               activation: $("#batch-activation").value }],
    include: ["dz"],
  };
  const { ok, body: answer } = await post("/v1/gradients", body);
  const table = $('[data-testid="dz-table"]');
  table.replaceChildren();
  if (!ok) {
    const first = Object.entries(answer.errors || {})[0];
    $("#err-batch").textContent = first ? `${first[0]}: ${first[1].join(" ")}` : answer.detail;
    $('[data-testid="sum-line"]').textContent = "";
    $('[data-testid="batch-answer"]').textContent = JSON.stringify(answer, null, 1);
    return;
  }
  $("#err-batch").textContent = "";
  const { dz, db } = answer.layers[0];
  const header = (text) => { const th = document.createElement("th"); th.textContent = text; return th; };
  dz.forEach((row, i) => {
    const tr = document.createElement("tr");
    tr.append(header(`sample ${i}`));
    row.forEach((value, j) => {
      const td = document.createElement("td");
      td.textContent = String(value);
      td.dataset.testid = `dz-${i}-${j}`;
      tr.append(td);
    });
    table.append(tr);
  });
  const sums = document.createElement("tr");
  sums.className = "sum";
  sums.append(header("column sums = db"));
  db.flat().forEach((value, j) => {
    const td = document.createElement("td");
    td.textContent = String(value);
    td.dataset.testid = `db-${j}`;
    sums.append(td);
  });
  table.append(sums);
  const dbShape = Array.isArray(db[0]) ? `(${db.length}, ${db[0].length})` : `(${db.length},)`;
  $('[data-testid="sum-line"]').textContent = shape === "row"
    ? `db = np.sum(dz, axis=0, keepdims=True)   # shape ${dbShape}, the bias's own shape`
    : `db = np.sum(dz, axis=0)   # shape ${dbShape}, the bias's own shape`;
  $('[data-testid="batch-answer"]').textContent =
    `db = ${JSON.stringify(db)}\nshape ${dbShape}: the shape the bias was sent in`;
}

// ---------------------------------------------------------------- wiring

const refreshNeuron = debounce(updateNeuron, 120);
document.querySelectorAll("#neuron-form input, #neuron-form select").forEach((input) => {
  input.addEventListener("input", refreshNeuron);
  input.addEventListener("change", refreshNeuron);
});
["X", "W", "b", "Y"].forEach(buildGrid);
document.querySelectorAll("#batch select, #batch input[type=radio]").forEach((input) => {
  input.addEventListener("change", updateBatch);
});
updateNeuron();
updateBatch();
