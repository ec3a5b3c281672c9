"""Ray job: the whole pipeline for a card (ETL -> train -> evaluate -> register, and with
``--set`` nothing else: serving is a long-lived application, deployed with `serve deploy`).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/pipeline.py --card systems/harmful_content.yaml --workdir /tmp/mlsd-work
"""

import sys

from mlsd_ray.jobtools import job_main
from mlsd_ray.pipeline import run_pipeline

if __name__ == "__main__":
    sys.exit(job_main(__doc__ or "", lambda card, wd: run_pipeline(card, wd, serve_requests=0)))
