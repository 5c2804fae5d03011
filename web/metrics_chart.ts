/**
 * Charts of the core's metrics: one small inline-SVG line chart per chosen
 * metric, each with its own y scale (labelled 0, half and top, in the
 * metric's unit), a time axis and the current value in its title.
 *
 * CPU (%), memory (MiB) and rates have unrelated scales, so charts never share
 * an axis. Every metric the core sends is listed under the charts with its
 * current value and a button that charts it (or, for a charted one, removes
 * the chart), so any row can be followed over time. No chart library: the
 * page stays a small bundle, and a polyline with six labels is all it needs.
 *
 * @module
 */
import type { Metric } from "../gen/chat_pb.ts";

const SVG_NS = "http://www.w3.org/2000/svg";
/** Samples kept per metric (one a second: the last minute). */
const POINTS = 60;
const MIN_SLOTS = 12;
/** Height in CSS pixels; the width is the chart's own, so text never scales. */
const H = 96;
const PLOT = { left: 44, rightPad: 6, top: 8, bottom: H - 18 };

/** Charted when the page opens. */
export const DEFAULT_CHARTED = [
  "cpu_usage",
  "memory_usage",
  "requests_per_second",
] as const;

const LABELS: Record<string, string> = {
  cpu_usage: "CPU",
  memory_usage: "Memory",
  heap_used: "Heap",
  requests_per_second: "Requests",
};

/** The unit shown after a metric's values. */
export function unitOf(name: string): string {
  if (name === "cpu_usage") return "%";
  if (name === "memory_usage" || name === "heap_used") return "MiB";
  if (name.endsWith("_per_second")) return "/s";
  return "";
}

/** A value with at most three significant digits: 0.123, 2.5, 12.3, 1234. */
export function formatValue(v: number): string {
  if (Number.isInteger(v) || Math.abs(v) >= 100) return v.toFixed(0);
  return String(Number(v.toPrecision(3)));
}

/** A round top for the y axis at or above `max` (1, 2, 2.5, 5 times 10^k). */
export function niceTop(max: number): number {
  if (!(max > 0)) return 1;
  const pow = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) {
    if (m * pow >= max) return m * pow;
  }
  return 10 * pow;
}

/** Draws charts into `charts` and lists every metric in `list`. */
export class MetricsChart {
  #charts: HTMLElement;
  #list: HTMLElement;
  #series = new Map<string, number[]>();
  #charted = new Map<string, SVGSVGElement>();
  #received = 0;

  constructor(charts: HTMLElement, list: HTMLElement) {
    this.#charts = charts;
    this.#list = list;
    for (const name of DEFAULT_CHARTED) this.#addChart(name);
  }

  /** Adds one sample; redraws its chart, if charted, and its list row. */
  push(metric: Metric): void {
    this.#received++;
    this.#charts.dataset.samples = String(this.#received);
    const values = this.#series.get(metric.name) ?? [];
    values.push(metric.value);
    if (values.length > POINTS) values.shift();
    this.#series.set(metric.name, values);
    const chart = this.#charted.get(metric.name);
    if (chart) draw(chart, metric.name, values);
    this.#row(metric.name, metric.value);
  }

  /** Charts `name`, or removes its chart if it has one. */
  toggle(name: string): void {
    const chart = this.#charted.get(name);
    if (chart) {
      chart.remove();
      this.#charted.delete(name);
    } else this.#addChart(name);
    const values = this.#series.get(name);
    if (values) this.#row(name, values[values.length - 1]);
  }

  #addChart(name: string): void {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("role", "img");
    svg.dataset.series = name;
    svg.classList.add("chart");
    this.#charted.set(name, svg);
    // Keep charts in the order they were asked for.
    this.#charts.append(svg);
    draw(svg, name, this.#series.get(name) ?? []);
  }

  #row(name: string, value: number): void {
    let item = this.#list.querySelector<HTMLElement>(
      `[data-metric="${CSS.escape(name)}"]`,
    );
    if (!item) {
      item = document.createElement("li");
      item.dataset.metric = name;
      const text = document.createElement("span");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "chart-toggle";
      button.addEventListener("click", () => this.toggle(name));
      item.append(text, button);
      this.#list.append(item);
    }
    const unit = unitOf(name);
    item.firstElementChild!.textContent = `${name}: ${formatValue(value)}${
      unit && unit !== "/s" ? " " + unit : unit
    }`;
    const button = item.querySelector("button")!;
    const charted = this.#charted.has(name);
    button.textContent = charted ? "Hide" : "Chart";
    button.setAttribute(
      "aria-label",
      `${charted ? "Hide the chart of" : "Chart"} ${name}`,
    );
    item.classList.toggle("charted", charted);
  }
}

/** Redraws one chart: frame, y labels, time labels, line, title. */
function draw(svg: SVGSVGElement, name: string, values: number[]): void {
  // Drawn in the chart's own pixels (redrawn each second, so a resize or
  // rotation catches up at the next sample).
  const width = Math.max(160, Math.round(svg.getBoundingClientRect().width)) ||
    320;
  svg.setAttribute("viewBox", `0 0 ${width} ${H}`);
  const right = width - PLOT.rightPad;
  const last = values.at(-1);
  const top = niceTop(Math.max(...values, 0));
  const unit = unitOf(name);
  const height = PLOT.bottom - PLOT.top;
  const y = (v: number) => PLOT.bottom - (v / top) * height;
  const slots = Math.min(Math.max(values.length, MIN_SLOTS), POINTS);
  const step = (right - PLOT.left) / (slots - 1);
  const points = values.map((v, i) =>
    `${(PLOT.left + (slots - values.length + i) * step).toFixed(1)},${
      y(v).toFixed(1)
    }`
  ).join(" ");
  const title = `${LABELS[name] ?? name}: ${
    last === undefined ? "–" : formatValue(last)
  }${unit && last !== undefined ? (unit === "/s" ? unit : " " + unit) : ""}`;
  const children: SVGElement[] = [
    el("rect", {
      class: "frame",
      x: PLOT.left,
      y: PLOT.top,
      width: right - PLOT.left,
      height,
    }),
  ];
  for (const f of [0, 0.5, 1]) {
    const at = y(top * f);
    children.push(
      el("line", {
        class: "grid",
        x1: PLOT.left,
        x2: right,
        y1: at,
        y2: at,
      }),
      el("text", {
        class: "axis",
        x: PLOT.left - 4,
        y: at + 4,
        "text-anchor": "end",
      }, formatValue(top * f)),
    );
  }
  children.push(
    el("text", { class: "axis", x: PLOT.left, y: H - 4 }, `−${slots} s`),
    el(
      "text",
      { class: "axis", x: right, y: H - 4, "text-anchor": "end" },
      "now",
    ),
    el("polyline", { class: "line", points }),
    el("text", { class: "label", x: PLOT.left + 6, y: PLOT.top + 14 }, title),
  );
  svg.replaceChildren(...children);
  svg.setAttribute("aria-label", `${title}, last ${slots} seconds`);
}

function el(
  tag: string,
  attrs: Record<string, string | number>,
  text?: string,
): SVGElement {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}
