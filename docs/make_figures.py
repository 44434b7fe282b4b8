"""The pictures of docs/inference.md: ``python docs/make_figures.py`` (needs glmmcore[plot]
and the seed data in ../shared, or GLMMCORE_SHARED).

The seed model ``gpa_rs`` (lme4: ``lmer(gpa ~ occasion + (1 + occasion | student))``) for
the random effects, residuals and profiles; a simulated batch of per-gene Poisson GLMMs
(80 genes, 20 with an effect of the condition) for the volcano plot.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import glmmcore
from glmmcore import plot

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("GLMMCORE_SHARED", HERE.parents[1] / "shared"))
OUT = HERE / "figures"


def gene_batch(n_genes: int = 80, n_effect: int = 20, seed: int = 3) -> pd.DataFrame:
    """Coefficient table of per-gene Poisson GLMMs (``count ~ cond + (1 | subject)``):
    columns feature, term, estimate, std_error, statistic, p_value, p_adjusted (BH)."""
    rng = np.random.default_rng(seed)
    subject = np.repeat(np.arange(30), 20)
    cond = (subject % 2).astype(float)
    data = pd.DataFrame({"count": 0, "cond": cond, "subject": subject})
    model = glmmcore.MixedModel("count ~ cond + (1 | subject)", data, family="poisson")
    rows = []
    for g in range(n_genes):
        effect = rng.choice([-0.6, 0.6]) if g < n_effect else 0.0
        mu = np.exp(1.0 + effect * cond + rng.normal(0, 0.4, 30)[subject])
        table = model.fit(rng.poisson(mu), control={"warn": False}).coef_table()
        for term, row in table.iterrows():
            rows.append((f"gene{g}", term, row["Estimate"], row["Std. Error"],
                         row["z value"], row["Pr(>|z|)"]))
    coefs = pd.DataFrame(rows, columns=["feature", "term", "estimate", "std_error",
                                        "statistic", "p_value"])
    coefs["p_adjusted"] = coefs.groupby("term")["p_value"].transform(_benjamini_hochberg)
    return coefs


def _benjamini_hochberg(p: pd.Series) -> np.ndarray:
    values = p.to_numpy()
    order = np.argsort(values)
    ranked = values[order] * values.size / np.arange(1, values.size + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty_like(values)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def main() -> None:
    OUT.mkdir(exist_ok=True)
    gpa = pd.read_csv(SHARED / "data" / "gpa.csv")
    fit = glmmcore.fit("gpa ~ occasion + (1 + occasion | student)", gpa)
    figures = {
        "caterpillar.png": lambda ax: plot.caterpillar(fit, "student", term="occasion", ax=ax),
        "qq_ranef.png": lambda ax: plot.qq_ranef(fit, "student", ax=ax),
        "resid_fitted.png": lambda ax: plot.resid_fitted(fit, ax=ax),
    }
    profile = fit.profile()
    for name in ("sd_(Intercept)|student", "occasion"):
        slug = "profile_" + name.split("|")[0].strip("()").replace("(", "").replace(")", "")
        figures[f"{slug}.png"] = (lambda ax, name=name:
                                  plot.profile_zeta(profile, parameter=name, ax=ax))
    coefs = gene_batch()
    figures["volcano.png"] = lambda ax: plot.volcano(coefs, "cond", ax=ax)
    for file, draw in figures.items():
        height = 7.0 if file == "caterpillar.png" else 3.6
        fig, ax = plt.subplots(figsize=(5.0, height))
        draw(ax)
        if file == "caterpillar.png":
            ax.set_yticks([])       # 200 students: the order, not the labels
        fig.tight_layout()
        fig.savefig(OUT / file, dpi=90)
        plt.close(fig)
        print("wrote", OUT / file)


if __name__ == "__main__":
    main()
