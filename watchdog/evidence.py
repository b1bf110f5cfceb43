"""The evidence picture of a rollback a watch decided: what the deciding signals saw, and when.

One PNG per incident from a failed watch: for each failed signal (at most ``MAX_PANELS``) the
canary's and the baseline's figures over the watch, and the test's statistic against its bound,
with the deploy and the decision marked. It is linked from the ticket and the chat message, so a
human judges the decision from the same numbers the detectors had (the signal points the engine
writes every tick). matplotlib is imported only when a picture is drawn: the CLI does not pay for
it at start-up. The same data gives the same bytes (fixed size, style and metadata).
"""

from __future__ import annotations

import io
import textwrap
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from watchdog.errors import InputError, StoreError
from watchdog.phases import DecisionKind
from watchdog.store import Incident, SignalPoint, Store

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: The most failed signals one picture draws (one row of panels each).
MAX_PANELS = 3
#: The picture's size: 1200 × 700 px.
WIDTH_IN, HEIGHT_IN, DPI = 12.0, 7.0, 100
#: The triggers of incidents a watch's signals decided: ``signal:<name>``.
SIGNAL_TRIGGER = "signal:"

DECISION_COLOUR = "#d62728"
DEPLOY_COLOUR = "#7f7f7f"
CANARY_COLOUR = "#ff7f0e"
BASELINE_COLOUR = "#1f77b4"
STATISTIC_COLOUR = "#6a3d9a"
BOUND_COLOUR = "#000000"
BLIND_COLOUR = "#999999"
#: The states of a tick that saw nothing to decide on (marked along the statistic's axis).
BLIND_STATES = ("no_data", "error")


@dataclass(frozen=True)
class Figures:
    """How a detector's canary and baseline figures read: what they are, the baseline's name, and
    whether they are fractions (drawn in per cent)."""

    what: str
    baseline: str = "baseline"
    percent: bool = False


#: By detector; a detector not named here has its figures drawn as they are.
FIGURES = {
    "canary_share": Figures("bad-event fraction", percent=True),
    "gauge_ratio": Figures("worst group's ratio to the baseline", baseline="limit"),
}
PLAIN = Figures("figure")


class NoPicture(InputError):
    """The incident has no evidence picture: no watch's signals decided it (a human's rollback, an
    incident report, a quarantine), or the incident does not exist."""


@dataclass(frozen=True)
class Panel:
    """One failed signal: its points through the watch and how its figures read."""

    signal: str
    detector: str
    statistic_name: str
    points: list[SignalPoint]


@dataclass(frozen=True)
class Picture:
    """What the picture shows, read from the store (the drawing needs nothing else)."""

    incident: Incident
    release: str
    target: str
    deployed_at: float
    decided_at: float
    panels: list[Panel]
    more: int  # failed signals beyond MAX_PANELS, not drawn

    def offset(self, at: float) -> float:
        """Seconds since the deploy: the picture's time axis."""
        return at - self.deployed_at


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def from_watch(incident: Incident) -> bool:
    """Whether a watch's failed signals decided the incident (then it has an evidence picture)."""
    return incident.trigger.startswith(SIGNAL_TRIGGER)


def evidence_url(public_url: str | None, incident: Incident) -> str | None:
    """Where the API serves the incident's evidence picture, when it has one and a public address."""
    if not public_url or not from_watch(incident):
        return None
    return f"{public_url.rstrip('/')}/v1/incidents/{incident.id}/evidence.png"


def picture_of(store: Store, incident_id: int) -> Picture:
    """The incident's picture, from its deciding watch's points; ``NoPicture`` says why there is none."""
    try:
        incident = store.incident(incident_id)
    except StoreError as exc:
        raise NoPicture("no such incident", argument="incident", value=incident_id) from exc
    if not from_watch(incident):
        raise NoPicture(
            f"not decided by a watch (trigger {incident.trigger!r}): there are no signal paths to draw",
            argument="incident",
            value=incident_id,
        )
    decided = next(
        (
            e
            for e in store.decisions(incident_id=incident.id)
            if e.kind == DecisionKind.ROLLBACK_DECIDED and e.watch_id is not None
        ),
        None,
    )
    if decided is None or decided.watch_id is None:
        raise NoPicture(
            "no watch's decision names it: there are no signal paths to draw",
            argument="incident",
            value=incident_id,
        )
    watch = store.watch(decided.watch_id)
    failed = [f for f in incident.evidence.get("failed") or [] if isinstance(f, dict) and f.get("signal")]
    if not failed:  # an incident without its evidence: the trigger names the deciding signal
        failed = [{"signal": incident.trigger.removeprefix(SIGNAL_TRIGGER)}]
    panels = []
    for item in failed[:MAX_PANELS]:
        found = item.get("evidence")
        inner = found if isinstance(found, dict) else {}
        panels.append(
            Panel(
                signal=str(item["signal"]),
                detector=str(item.get("detector") or ""),
                statistic_name=str(inner.get("statistic_name") or "statistic"),
                points=store.points(watch.id, str(item["signal"])),
            )
        )
    target = store.release(incident.to_release_id).tag if incident.to_release_id else "?"
    return Picture(
        incident=incident,
        release=store.release(incident.from_release_id).tag,
        target=target,
        deployed_at=watch.started_at,
        decided_at=decided.at,
        panels=panels,
        more=max(0, len(failed) - MAX_PANELS),
    )


_drawing = threading.Lock()  # matplotlib's caches (fonts, text layout) are shared by every figure


def evidence_png(store: Store, incident_id: int) -> bytes:
    """The PNG of the incident's evidence picture (1200 × 700 px); ``NoPicture`` when it has none."""
    return render(picture_of(store, incident_id))


def render(picture: Picture) -> bytes:
    import matplotlib.style

    with _drawing, matplotlib.style.context("default"):
        figure = draw(picture)
        out = io.BytesIO()
        figure.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
    return out.getvalue()


def draw(picture: Picture) -> Figure:
    """The picture as a matplotlib figure on the Agg canvas (fixed layout: no tight bounding box,
    so a point's place in the figure is its place in the PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI)
    FigureCanvasAgg(figure)
    incident = picture.incident
    signals = ", ".join(p.signal for p in picture.panels) + (
        f" (+{picture.more} more)" if picture.more else ""
    )
    figure.suptitle(
        f"Rollback of {incident.service} in {incident.env}: {picture.release} → {picture.target}"
        f" — failed: {signals}",
        fontsize=14,
        fontweight="bold",
    )
    figure.text(
        0.5,
        0.925,
        f"incident {incident.id}, trigger {incident.trigger}; deployed {utc(picture.deployed_at)}, "
        f"rollback decided {utc(picture.decided_at)} "
        f"({picture.offset(picture.decided_at):.1f} s after the deploy)",
        ha="center",
        fontsize=10,
    )
    rows = len(picture.panels)
    axes = figure.subplots(rows, 2, squeeze=False, sharex=True)
    figure.subplots_adjust(left=0.08, right=0.98, top=0.88, bottom=0.09, hspace=0.38, wspace=0.22)
    for (figures_ax, statistic_ax), panel in zip(axes, picture.panels, strict=True):
        _figures(figures_ax, panel, picture)
        _statistic(statistic_ax, panel, picture)
    for ax in axes[-1]:
        ax.set_xlabel(f"seconds since the deploy ({utc(picture.deployed_at)})", fontsize=9)
    return figure


def _xs(points: list[SignalPoint], picture: Picture) -> list[float]:
    return [picture.offset(p.at) for p in points]


def _figures(ax: Axes, panel: Panel, picture: Picture) -> None:
    how = FIGURES.get(panel.detector, PLAIN)
    scale = 100.0 if how.percent else 1.0
    unit = " (%)" if how.percent else ""
    canary = [(picture.offset(p.at), p.canary * scale) for p in panel.points if p.canary is not None]
    baseline = [(picture.offset(p.at), p.baseline * scale) for p in panel.points if p.baseline is not None]
    ax.set_title(f"{panel.signal}: canary vs {how.baseline}", fontsize=11, loc="left")
    if canary:
        ax.plot(*zip(*canary, strict=True), color=CANARY_COLOUR, marker="o", markersize=3, label="canary")
    if baseline:
        ax.plot(
            *zip(*baseline, strict=True), color=BASELINE_COLOUR, marker="s", markersize=3, label=how.baseline
        )
    if canary or baseline:
        ax.set_ylabel(textwrap.fill(how.what + unit, 28), fontsize=9)
        ax.legend(fontsize=8, loc="center left")
    else:
        why = (
            "no points recorded"
            if not panel.points
            else f"its detector ({panel.detector or '?'}) compares no cohorts"
        )
        ax.text(
            0.5,
            0.5,
            f"no canary or baseline figures:\n{why}",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=9,
        )
    _marks(ax, picture, label=False)


def _statistic(ax: Axes, panel: Panel, picture: Picture) -> None:
    ax.set_title(
        f"{panel.signal}: {panel.detector or 'test'} statistic vs its bound", fontsize=11, loc="left"
    )
    stats = [(picture.offset(p.at), p.statistic) for p in panel.points if p.statistic is not None]
    bounds = [(picture.offset(p.at), p.threshold) for p in panel.points if p.threshold is not None]
    if stats:
        ax.plot(
            *zip(*stats, strict=True), color=STATISTIC_COLOUR, marker="o", markersize=3, label="statistic"
        )
    if bounds:
        ax.plot(
            *zip(*bounds, strict=True),
            color=BOUND_COLOUR,
            linestyle="--",
            drawstyle="steps-post",
            label="bound (fail above)",
        )
    blind = [picture.offset(p.at) for p in panel.points if p.state in BLIND_STATES]
    if blind:
        ax.plot(
            blind,
            [0.04] * len(blind),
            transform=ax.get_xaxis_transform(),
            color=BLIND_COLOUR,
            marker="x",
            linestyle="none",
            label="no data / error",
        )
    if stats or bounds:
        ax.legend(fontsize=8, loc="center left")
    else:
        ax.text(
            0.5, 0.5, "no statistic recorded", ha="center", va="center", transform=ax.transAxes, fontsize=9
        )
    ax.set_ylabel(textwrap.fill(panel.statistic_name, 28), fontsize=9)
    _marks(ax, picture, label=True)


def _marks(ax: Axes, picture: Picture, *, label: bool) -> None:
    """The deploy and the decision as vertical lines (the decision's drawn without antialiasing, on
    top, so its colour is exact where it stands)."""
    decided = picture.offset(picture.decided_at)
    ax.axvline(0.0, color=DEPLOY_COLOUR, linestyle=":", linewidth=1.5, zorder=4)
    ax.axvline(decided, color=DECISION_COLOUR, linewidth=2, antialiased=False, zorder=5)
    xs = [x for p in picture.panels for x in _xs(p.points, picture)] + [0.0, decided]
    span = max(xs) - min(xs) or 1.0
    ax.set_xlim(min(xs) - 0.04 * span, max(xs) + 0.12 * span)
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.tick_params(labelsize=8)
    if label:
        top = ax.get_ylim()[1]
        ax.text(0.0, top, " deploy", color=DEPLOY_COLOUR, fontsize=8, va="top", ha="left")
        ax.text(
            decided,
            top,
            f"rollback decided \n+{decided:.1f} s ",
            color=DECISION_COLOUR,
            fontsize=8,
            va="top",
            ha="right",
            fontweight="bold",
        )
