/**
 * A small inline-SVG chart of the core's metrics: one sparkline per series.
 *
 * CPU (%), memory and requests/s have unrelated scales, so each series gets its
 * own row scaled to its own recent maximum rather than one shared axis. Any
 * other metric the core sends is listed as a plain value under the chart.
 *
 * @module
 */
import type { Metric } from "../gen/chat_pb.ts";

const SVG_NS = "http://www.w3.org/2000/svg";
const WIDTH = 360;
const ROW = 56;
const POINTS = 60;
const MIN_SLOTS = 12;

/** The charted series, in row order. */
export const CHARTED = [
  { name: "cpu_usage", label: "CPU", unit: "%" },
  { name: "memory_usage", label: "Memory", unit: "MiB" },
  { name: "requests_per_second", label: "Requests/s", unit: "" },
] as const;

/** Draws metrics into an `<svg>` and lists the uncharted ones in `others`. */
export class MetricsChart {
  #svg: SVGSVGElement;
  #others: HTMLElement;
  #series = new Map<string, number[]>();
  #received = 0;

  constructor(svg: SVGSVGElement, others: HTMLElement) {
    this.#svg = svg;
    this.#others = others;
    svg.setAttribute("viewBox", `0 0 ${WIDTH} ${ROW * CHARTED.length}`);
    svg.replaceChildren(
      ...CHARTED.map((series, row) => this.#row(series.name, row)),
    );
  }

  /** Adds one sample and redraws its row (or its line in the list). */
  push(metric: Metric): void {
    this.#received++;
    this.#svg.dataset.samples = String(this.#received);
    const values = this.#series.get(metric.name) ?? [];
    values.push(metric.value);
    if (values.length > POINTS) values.shift();
    this.#series.set(metric.name, values);
    const row = CHARTED.findIndex((s) => s.name === metric.name);
    if (row >= 0) this.#draw(row, values);
    else this.#other(metric);
  }

  #row(name: string, row: number): SVGGElement {
    const g = document.createElementNS(SVG_NS, "g");
    g.setAttribute("transform", `translate(0 ${row * ROW})`);
    g.dataset.series = name;
    const frame = document.createElementNS(SVG_NS, "rect");
    frame.setAttribute("class", "frame");
    frame.setAttribute("width", String(WIDTH));
    frame.setAttribute("height", String(ROW - 6));
    const line = document.createElementNS(SVG_NS, "polyline");
    line.setAttribute("class", `line line-${row}`);
    line.setAttribute("points", "");
    const label = document.createElementNS(SVG_NS, "text");
    label.setAttribute("class", "label");
    label.setAttribute("x", "6");
    label.setAttribute("y", "16");
    label.textContent = `${CHARTED[row].label}: –`;
    g.append(frame, line, label);
    return g;
  }

  #draw(row: number, values: number[]): void {
    const g = this.#svg.children[row];
    const max = Math.max(...values, 1e-9) * 1.1;
    const height = ROW - 10;
    // Few samples spread over at least MIN_SLOTS, so a new chart is readable;
    // from POINTS samples on, the window scrolls.
    const slots = Math.min(Math.max(values.length, MIN_SLOTS), POINTS);
    const step = WIDTH / (slots - 1);
    const points = values.map((v, i) => {
      const x = (slots - values.length + i) * step;
      const y = 4 + height - (v / max) * (height - 18);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    g.querySelector("polyline")!.setAttribute("points", points.join(" "));
    const { label, unit } = CHARTED[row];
    const last = values[values.length - 1];
    g.querySelector("text")!.textContent = `${label}: ${last.toFixed(1)}${
      unit ? " " + unit : ""
    }`;
  }

  #other(metric: Metric): void {
    let item = this.#others.querySelector<HTMLElement>(
      `[data-metric="${CSS.escape(metric.name)}"]`,
    );
    if (!item) {
      item = document.createElement("li");
      item.dataset.metric = metric.name;
      this.#others.append(item);
    }
    item.textContent = `${metric.name}: ${
      Number.isInteger(metric.value) ? metric.value : metric.value.toFixed(2)
    }`;
  }
}
