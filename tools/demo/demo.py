"""Demo tool: embed a generated swiss roll with PCA or a random projection (numpy only, offline)."""

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


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    out = Path(HydraConfig.get().runtime.output_dir)
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
    np.save(out / "embedding.npy", embedding)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics))


if __name__ == "__main__":
    main()
