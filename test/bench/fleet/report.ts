// Output of the fleet benchmark: a text table (stdout and <out>/<scenario>.txt), the same as
// JSON (<out>/<scenario>.json, with the plots' data) and one SVG line chart per plot (<out>/<scenario>-<plot>.svg).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FleetScenario } from './scenario.js';

/** One measure: its figure and, where there is one, the target or bound it is held to. */
export interface Row {
  phase: string;
  measure: string;
  figure: number;
  unit: string;
  /** Pass when figure <= target. */
  target?: number;
  targetNote?: string;
}

export interface Plot {
  name: string;
  title: string;
  yLabel: string;
  /** A horizontal line (a limit or target). */
  limit?: number;
  /** Series name → [x seconds, y] points. */
  series: Record<string, [number, number][]>;
}

export interface Report {
  dir: string;
  scenario: FleetScenario;
  rows: Row[];
  plots: Plot[];
  failures: string[];
}

function format(value: number, unit: string): string {
  if (!Number.isFinite(value)) return 'n/a';
  const digits = Math.abs(value) >= 100 || Number.isInteger(value) ? 0 : 2;
  return `${value.toLocaleString('en-US', { maximumFractionDigits: digits })} ${unit}`;
}

function verdict(row: Row): { ratio: string; result: string } {
  if (row.target === undefined) return { ratio: '', result: '' };
  if (!Number.isFinite(row.figure)) return { ratio: '', result: 'FAIL' };
  const ratio = row.target === 0 ? (row.figure === 0 ? 0 : Infinity) : row.figure / row.target;
  return {
    ratio: Number.isFinite(ratio) ? ratio.toFixed(2) : 'inf',
    result: row.figure <= row.target ? 'pass' : 'FAIL',
  };
}

/** The rows as a Markdown table (readable as text, pastable into an issue note). */
export function table(rows: Row[]): string {
  const lines = [
    '| phase | measure | figure | target / bound | ratio | result |',
    '| --- | --- | --- | --- | --- | --- |',
  ];
  for (const row of rows) {
    const { ratio, result } = verdict(row);
    const target =
      row.target === undefined
        ? ''
        : `<= ${format(row.target, row.unit)}${row.targetNote ? ` (${row.targetNote})` : ''}`;
    lines.push(
      `| ${row.phase} | ${row.measure} | ${format(row.figure, row.unit)} | ${target} | ${ratio} | ${result} |`,
    );
  }
  return lines.join('\n');
}

const COLORS = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
];

/** A plain SVG line chart: axes with five ticks each, one polyline per series, the limit dashed. */
export function lineChart(plot: Plot): string {
  const width = 900;
  const height = 420;
  const margin = { left: 70, right: 160, top: 40, bottom: 50 };
  const points = Object.values(plot.series).flat();
  const xMax = Math.max(1, ...points.map(([x]) => x));
  const yMax = Math.max(1, plot.limit ?? 0, ...points.map(([, y]) => y)) * 1.1;
  const sx = (x: number) => margin.left + (x / xMax) * (width - margin.left - margin.right);
  const sy = (y: number) =>
    height - margin.bottom - (y / yMax) * (height - margin.top - margin.bottom);
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15">${escape(plot.title)}</text>`,
    `<line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(xMax)}" y2="${sy(0)}" stroke="black"/>`,
    `<line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(0)}" y2="${sy(yMax)}" stroke="black"/>`,
    `<text x="${(sx(0) + sx(xMax)) / 2}" y="${height - 12}" text-anchor="middle">seconds into the phase</text>`,
    `<text x="16" y="${height / 2}" text-anchor="middle" transform="rotate(-90 16 ${height / 2})">${escape(plot.yLabel)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const x = (xMax * i) / 5;
    const y = (yMax * i) / 5;
    out.push(`<text x="${sx(x)}" y="${sy(0) + 18}" text-anchor="middle">${x.toFixed(0)}</text>`);
    out.push(
      `<text x="${sx(0) - 8}" y="${sy(y) + 4}" text-anchor="end">${y.toFixed(y < 10 ? 1 : 0)}</text>`,
    );
    out.push(`<line x1="${sx(0)}" y1="${sy(y)}" x2="${sx(xMax)}" y2="${sy(y)}" stroke="#eee"/>`);
  }
  if (plot.limit !== undefined) {
    out.push(
      `<line x1="${sx(0)}" y1="${sy(plot.limit)}" x2="${sx(xMax)}" y2="${sy(plot.limit)}" stroke="red" stroke-dasharray="6 4"/>`,
      `<text x="${sx(xMax) + 6}" y="${sy(plot.limit) + 4}" fill="red">limit ${plot.limit}</text>`,
    );
  }
  Object.entries(plot.series).forEach(([name, series], i) => {
    const color = COLORS[i % COLORS.length]!;
    const path = [...series]
      .sort(([a], [b]) => a - b)
      .map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`)
      .join(' ');
    out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${path}"/>`);
    const ly = margin.top + 16 * i;
    out.push(
      `<line x1="${width - margin.right + 40}" y1="${ly}" x2="${width - margin.right + 60}" y2="${ly}" stroke="${color}" stroke-width="3"/>`,
      `<text x="${width - margin.right + 66}" y="${ly + 4}">${escape(name)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Prints the table and writes the table, JSON and plots under `dir`. */
export function writeReport(report: Report): Promise<void> {
  const text = table(report.rows);
  console.log(`\n${report.scenario.name}\n\n${text}\n`);
  const base = join(report.dir, report.scenario.name);
  writeFileSync(`${base}.txt`, `${text}\n`);
  writeFileSync(
    `${base}.json`,
    JSON.stringify(
      {
        scenario: report.scenario,
        rows: report.rows.map((row) => ({ ...row, ...verdict(row) })),
        failures: report.failures,
        // The plots' data, for comparing runs more finely than a chart can be read.
        plots: report.plots.map(({ name, series }) => ({ name, series })),
      },
      null,
      2,
    ),
  );
  for (const plot of report.plots) writeFileSync(`${base}-${plot.name}.svg`, lineChart(plot));
  console.log(`written: ${base}.txt, ${base}.json, ${report.plots.length} plots (${base}-*.svg)`);
  return Promise.resolve();
}
