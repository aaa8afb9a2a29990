"""Demo tool: embed a generated swiss roll with PCA or a random projection, evaluate an embedding (its own, or one
another run wrote), or tabulate the metrics of several runs (numpy only, offline)."""

import json
from pathlib import Path

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


def swiss_roll(n: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    height = 21 * rng.random(n)
    points = np.stack([t * np.cos(t), height, t * np.sin(t)], axis=1)
    return points + noise * rng.standard_normal(points.shape), t


def pca(x: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:k].T, vt[:k]


def random_projection(x: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    basis, _ = np.linalg.qr(rng.standard_normal((x.shape[1], k)))
    return x @ basis, basis.T


METHODS = {"pca": pca, "random_projection": random_projection}


def neighbours(x: np.ndarray, k: int) -> np.ndarray:
    """Each point's k nearest other points (unordered)."""
    squared = (x**2).sum(axis=1)
    distances = squared[:, None] + squared[None, :] - 2 * x @ x.T
    np.fill_diagonal(distances, np.inf)
    return np.argpartition(distances, k, axis=1)[:, :k]


def neighbours_kept(embedding: np.ndarray, roll: np.ndarray, k: int) -> float:
    """The share of each point's k nearest neighbours on the roll that are among its k nearest in the embedding."""
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(neighbours(roll, k), neighbours(embedding, k))]))


def table(runs: list[str], out: Path) -> dict:
    """Every run's metrics in one table (table.md), and the mean and std of each number over the runs."""
    rows = [json.loads((Path(run) / "metrics.json").read_text()) for run in runs]
    keys = [key for key in (rows[0] if rows else {}) if isinstance(rows[0][key], float)]
    lines = ["| run | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {Path(run).name} | " + " | ".join(f"{row[key]:.4f}" for key in keys) + " |"
              for run, row in zip(runs, rows)]
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    summary = {"runs": len(rows)}
    for key in keys:
        values = np.array([row[key] for row in rows])
        summary[f"{key}_mean"], summary[f"{key}_std"] = float(values.mean()), float(values.std())
    return summary


def write(out: Path, metrics: dict) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    out = Path(HydraConfig.get().runtime.output_dir)
    if cfg.task == "table":
        return write(out, table(list(cfg.runs), out))
    if cfg.task == "evaluate" and cfg.embedding is not None:  # the run dir of an embedding another run wrote
        folder = Path(cfg.embedding)
        kept = neighbours_kept(np.load(folder / "embedding.npy"), np.load(folder / "roll.npy"), cfg.k)
        return write(out, {"k": int(cfg.k), "neighbours_kept": kept})
    rng = np.random.default_rng(cfg.seed)
    points, t = swiss_roll(cfg.data.n_samples, cfg.data.noise, rng)
    centered = points - points.mean(axis=0)
    embedding, components = METHODS[cfg.method](centered, cfg.n_components, rng)
    residual = centered - embedding @ components
    metrics = {
        "method": cfg.method,
        "n_components": int(cfg.n_components),
        "explained_variance": float(1 - (residual**2).sum() / (centered**2).sum()),
        "reconstruction_error": float((residual**2).sum(axis=1).mean()),
        "roll_correlation": float(max(abs(np.corrcoef(embedding[:, i], t)[0, 1]) for i in range(embedding.shape[1]))),
    }
    roll = np.stack([t, points[:, 1]], axis=1)  # each point's place on the roll
    if cfg.task == "evaluate":
        metrics["neighbours_kept"] = neighbours_kept(embedding, roll, cfg.k)
    np.save(out / "embedding.npy", embedding)
    np.save(out / "roll.npy", roll)
    write(out, metrics)


if __name__ == "__main__":
    main()
