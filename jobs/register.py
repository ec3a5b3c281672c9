"""Ray job: Register the evaluated candidate in MLflow; move champion only if the gate passed.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/register.py --card systems/harmful_content.yaml --workdir /tmp/mlsd-work
"""

import sys

from mlsd_ray import pipeline
from mlsd_ray.jobtools import job_main

if __name__ == "__main__":
    sys.exit(job_main(__doc__ or "", pipeline.register))
