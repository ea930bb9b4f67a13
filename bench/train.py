"""Training the customer models at scale: features, segmentation, churn, and labelling every customer.

Loads demo orders into a PostgreSQL schema of its own (1,430,000 orders come
from about 1,000,000 customers), then times `train_models` and the scoring of
every customer (cluster, RFM, churn probability) and the answers of the unfiltered
view saved with the models, in this process.

    .venv/bin/python bench/train.py [--orders 1430000]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.api_latency import BI_APP  # noqa: E402
from bench.report import publish  # noqa: E402
from bi_app.ml.analyses import scored_customers  # noqa: E402
from bi_app.ml.models import train_models  # noqa: E402
from bi_app.ml.segmentation import MINIBATCH_ABOVE, SILHOUETTE_SAMPLE  # noqa: E402
from bi_app.service import answer_default_view  # noqa: E402
from data_layer.engine import make_engine  # noqa: E402
from data_layer.filters import Filters  # noqa: E402

SCHEMA = "bench_train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_430_000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    subprocess.run(["psql", args.postgres, "-qc", f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE; CREATE SCHEMA {SCHEMA}"],
                   check=True)
    url = f"{args.postgres}?options={quote(f'-csearch_path={SCHEMA}')}"
    print(f"loading {args.orders:,} demo orders ...")
    subprocess.run([BI_APP, "demo-data", "--rows", str(args.orders), "--replace", "--no-train"],
                   env={**os.environ, "BI_DATABASE_URL": url}, check=True, stdout=subprocess.DEVNULL)
    engine = make_engine(url, statement_timeout_ms=0)

    started = time.perf_counter()
    models = train_models(engine)
    training = time.perf_counter() - started
    started = time.perf_counter()
    with engine.connect() as conn:
        scored = scored_customers(conn, Filters(), models)
    scoring = time.perf_counter() - started
    started = time.perf_counter()
    answers = answer_default_view(engine, models)
    answering = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    segmentation, churn = models.segmentation, models.churn_evaluation
    lines = [
        f"{args.orders:,} demo orders from {models.customers:,} customers in PostgreSQL; one process, one thread "
        f"for the models (`TRAINING_THREADS`). Above {MINIBATCH_ABOVE:,} customers K-Means runs in mini-batches and "
        f"each silhouette is computed on a random {SILHOUETTE_SAMPLE:,} customers.",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {step} | {seconds:.1f} |" for step, seconds in models.seconds.items()],
        f"| train_models in all | {training:.1f} |",
        f"| label every customer (features, cluster, RFM, churn probability) | {scoring:.1f} |",
        f"| answer the unfiltered view ahead ({', '.join(sorted({k.split(':')[0] for k in answers}))}; "
        f"saved with the models by `bi-app train`) | {answering:.1f} |",
        "",
        f"Peak memory {peak_mb:,.0f} MB. Segmentation: k = {segmentation.k_}, silhouette "
        f"{segmentation.metrics_['silhouette']:.3f}, Davies-Bouldin {segmentation.metrics_['davies_bouldin']:.3f}, "
        f"stability ARI {segmentation.stability_['adjusted_rand_mean']:.3f} ± "
        f"{segmentation.stability_['adjusted_rand_sd']:.3f}. Churn: ROC AUC {churn['roc_auc']:.3f} against "
        f"{churn['baseline_roc_auc']:.3f} for recency alone ({churn['test_customers']:,} test customers). "
        f"{len(scored):,} customers scored.",
    ]
    publish("Training the customer models (PostgreSQL)", f"python bench/train.py --orders {args.orders}", lines)


if __name__ == "__main__":
    main()
