"""A PNG of a simulated encounter: own track, target tracks, closest approaches and manoeuvres."""
from __future__ import annotations

from pathlib import Path

from tango2_ros.sds.simulator import SimulationResult


def plot_run(result: SimulationResult, goal: tuple[float, float], path: Path, safety_distance_nm: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.5, 6.5))
    own = result.own_track.positions
    axes.plot([p[1] for p in own], [p[0] for p in own], color="tab:blue", linewidth=2, label="own ship")
    axes.plot(own[0][1], own[0][0], "o", color="tab:blue")
    axes.plot(goal[1], goal[0], "*", color="tab:blue", markersize=12, label="goal")
    for index, (target_id, track) in enumerate(result.target_tracks.items()):
        colour = f"C{index + 1}"
        axes.plot([p[1] for p in track.positions], [p[0] for p in track.positions], color=colour, label=target_id)
        axes.plot(track.positions[0][1], track.positions[0][0], "o", color=colour)
        closest = min(range(len(track.positions)), key=lambda i: (track.positions[i][0] - own[i][0]) ** 2
                      + (track.positions[i][1] - own[i][1]) ** 2)
        axes.plot([own[closest][1], track.positions[closest][1]], [own[closest][0], track.positions[closest][0]],
                  ":", color=colour)
        axes.add_patch(plt.Circle((own[closest][1], own[closest][0]), safety_distance_nm, fill=False, color=colour,
                                  alpha=0.3))
    for maneuver in result.maneuvers:
        index = min(int(maneuver["t_s"]), len(own) - 1)
        axes.annotate(f"{maneuver['course_change_deg']:+.0f} deg" + (
            f", {maneuver['speed_change_kn']:+.0f} kn" if maneuver["speed_change_kn"] else ""),
            (own[index][1], own[index][0]), textcoords="offset points", xytext=(8, -12), fontsize=8)
    axes.set_aspect("equal")
    axes.set_xlabel("east (NM)")
    axes.set_ylabel("north (NM)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    axes.set_title(f"{result.scenario}: min distance {result.min_distance_nm:.2f} NM, "
                   f"path +{result.path_extra_distance_pct:.1f} %")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
