"""A topic's balance over time as inline SVG, drawn by zos: no JavaScript, no fetched assets.

The balance after each ledger row (at most MAX_POINTS: with more rows, the last balance of each
of MAX_POINTS equal stretches of time), as a step line on a time axis; the zero line, the
highest and lowest balance and the first and last times are written on the axes. Every point
has a <title> (its time and balance), which a browser shows on hover and a screen reader reads.
"""

from __future__ import annotations

from html import escape

from zos_cli.timeutil import parse_time

MAX_POINTS = 240

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40


def _number(value: float) -> str:
    return f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def balance_points(conn, key: str, max_points: int = MAX_POINTS) -> list[dict]:
    """[{"at": stored time, "balance": after that row}, …] oldest first, thinned to at most
    `max_points` by keeping the last row of each equal stretch of time."""
    rows = conn.execute(
        "SELECT created_at, sum(amount) OVER (ORDER BY created_at, rowid) FROM salience_ledger "
        "WHERE topic_id = (SELECT id FROM topics WHERE key = ?) ORDER BY created_at, rowid",
        [key]).fetchall()
    if len(rows) <= max_points:
        return [{"at": at, "balance": b} for at, b in rows]
    start, end = parse_time(rows[0][0]).timestamp(), parse_time(rows[-1][0]).timestamp()
    width = (end - start) / max_points or 1.0
    kept: dict[int, tuple] = {}
    for at, balance in rows:
        kept[min(int((parse_time(at).timestamp() - start) / width), max_points - 1)] = (at, balance)
    return [{"at": at, "balance": b} for at, b in kept.values()]


def _when(stored: str) -> str:
    return stored[:16].replace("T", " ")  # to the minute, UTC


def balance_chart(points: list[dict], *, title: str) -> str:
    """`points`: [{"at": stored time, "balance": 12.5}, …] oldest first (balance_points)."""
    label = escape(f"Balance over time: {title}", quote=True)
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="zos-chart" role="img" '
            f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'aria-label="{label}">')
    if not points:
        return (head + f'<text x="{LEFT}" y="{HEIGHT // 2}" fill="#555">No ledger rows yet'
                "</text></svg>")
    values = [p["balance"] for p in points]
    times = [parse_time(p["at"]).timestamp() for p in points]
    low, high = min(0.0, min(values)), max(0.0, max(values))
    span = (high - low) or 1.0
    first, duration = times[0], (times[-1] - times[0])
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (inner_w * (times[i] - first) / duration if duration else inner_w / 2)

    def y(v: float) -> float:
        return TOP + inner_h * (high - v) / span

    steps = [f"{x(0):.1f},{y(values[0]):.1f}"]
    for i in range(1, len(values)):  # a balance holds until the next row changes it
        steps.append(f"{x(i):.1f},{y(values[i - 1]):.1f} {x(i):.1f},{y(values[i]):.1f}")
    line = " ".join(steps)
    parts = [
        head,
        f"<title>{label}</title>",
        f'<rect x="{LEFT}" y="{TOP}" width="{inner_w}" height="{inner_h}" fill="#f8f8fa" '
        'stroke="#ccc"/>',
        f'<line x1="{LEFT}" y1="{y(0):.1f}" x2="{LEFT + inner_w}" y2="{y(0):.1f}" '
        'stroke="#999" stroke-dasharray="4 3"/>',
        f'<polyline points="{line}" fill="none" stroke="#2563eb" stroke-width="2"/>',
    ]
    for i, point in enumerate(points):
        tip = escape(f"{_when(point['at'])}: {_number(point['balance'])}")
        parts.append(f'<circle cx="{x(i):.1f}" cy="{y(point["balance"]):.1f}" r="3" '
                     f'fill="#2563eb"><title>{tip}</title></circle>')
    text = 'font-size="12" fill="#333" font-family="sans-serif"'
    parts += [
        f'<text x="{LEFT - 6}" y="{y(high) + 4:.1f}" text-anchor="end" {text}>'
        f"{_number(high)}</text>",
        f'<text x="{LEFT - 6}" y="{y(low) + 4:.1f}" text-anchor="end" {text}>'
        f"{_number(low)}</text>",
        f'<text x="{LEFT}" y="{HEIGHT - 14}" {text}>{escape(_when(points[0]["at"]))}</text>',
        f'<text x="{LEFT + inner_w}" y="{HEIGHT - 14}" text-anchor="end" {text}>'
        f'{escape(_when(points[-1]["at"]))} UTC</text>',
        "</svg>",
    ]
    return "".join(parts)
