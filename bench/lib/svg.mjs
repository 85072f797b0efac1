// A horizontal bar chart (log time axis) of the bench results as a standalone SVG, no deps.
const esc = (s) =>
  String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);

const COLORS = { baseline: '#9aa0a6', nixoci: '#1a73e8', PASS: '#188038', MISS: '#d93025' };

/** bars: [{section, label, seconds, kind: 'baseline'|'nixoci', verdict?: 'PASS'|'MISS'}] */
export function barChartSvg({ title, subtitle, bars }) {
  const rowH = 22;
  const labelW = 380;
  const plotW = 500;
  const valueW = 110;
  const top = 78;
  const vals = bars.map((b) => b.seconds).filter((v) => v > 0);
  const lo = Math.floor(Math.log10(Math.min(...vals, 0.1)));
  const hi = Math.ceil(Math.log10(Math.max(...vals, 1)));
  const x = (v) => ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * plotW;

  const rows = [];
  let y = top;
  let section;
  for (const b of bars) {
    if (b.section !== section) {
      section = b.section;
      y += 6;
      rows.push(`<text x="8" y="${y + 14}" font-weight="bold">${esc(section)}</text>`);
      y += rowH;
    }
    const color = b.kind === 'baseline' ? COLORS.baseline : (COLORS[b.verdict] ?? COLORS.nixoci);
    const w = Math.max(1, x(b.seconds));
    rows.push(
      `<text x="${labelW - 8}" y="${y + 15}" text-anchor="end">${esc(b.label)}</text>`,
      `<rect x="${labelW}" y="${y + 3}" width="${w.toFixed(1)}" height="${rowH - 6}" fill="${color}"/>`,
      `<text x="${labelW + w + 6}" y="${y + 15}">${esc(b.seconds < 1 ? b.seconds.toFixed(3) : b.seconds.toFixed(2))} s${b.verdict ? ` ${b.verdict}` : ''}</text>`,
    );
    y += rowH;
  }
  const grid = [];
  for (let d = lo; d <= hi; d++) {
    const gx = labelW + x(10 ** d);
    grid.push(
      `<line x1="${gx}" y1="${top - 4}" x2="${gx}" y2="${y}" stroke="#dadce0"/>`,
      `<text x="${gx}" y="${top - 8}" text-anchor="middle" fill="#5f6368">${10 ** d >= 1 ? 10 ** d : (10 ** d).toFixed(-d)} s</text>`,
    );
  }
  const legend = [
    ['baseline', COLORS.baseline],
    ['nixoci (no goal)', COLORS.nixoci],
    ['nixoci, goal met', COLORS.PASS],
    ['nixoci, goal missed', COLORS.MISS],
  ]
    .map(
      ([t, c], i) =>
        `<rect x="${labelW + i * 150}" y="${y + 14}" width="12" height="12" fill="${c}"/><text x="${labelW + i * 150 + 18}" y="${y + 25}">${esc(t)}</text>`,
    )
    .join('');
  const width = labelW + plotW + valueW;
  const height = y + 40;
  return `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="8" y="22" font-size="16" font-weight="bold">${esc(title)}</text>
<text x="8" y="42" fill="#5f6368">${esc(subtitle)}</text>
${grid.join('\n')}
${rows.join('\n')}
${legend}
</svg>
`;
}
