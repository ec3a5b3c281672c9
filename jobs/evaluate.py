"""Ray job: Evaluate every trained model and the champion on the test split; check the gate.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/evaluate.py --card systems/harmful_content.yaml --workdir /tmp/mlsd-work
"""

import sys

from mlsd_ray import pipeline
from mlsd_ray.jobtools import job_main

if __name__ == "__main__":
    sys.exit(job_main(__doc__ or "", pipeline.evaluate))
