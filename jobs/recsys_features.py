"""Ray job: materialise a ranking card's feature views and seen lists into its Redis online
store (Ray tasks, one per chunk of entities).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/recsys_features.py --card systems/watch_time_ranking.yaml --workdir /tmp/w
"""

import sys

from mlsd_ray.jobtools import job_main
from mlsd_ray.recsys.stage import publish_features

if __name__ == "__main__":
    sys.exit(job_main(__doc__ or "", publish_features))
