"""Ray job: the watch loop, long-lived (drift/decay -> retrain -> gate -> canary -> promote).

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/watch.py --card systems/event_registration.yaml --workdir /tmp/mlsd-work
    # one step, for a scheduler: add --set monitoring.loop.watch.poll_s=1 and use `mlsd watch
    # CARD --once` instead
"""

import sys
from typing import Any

from mlsd_ray.jobtools import job_main
from mlsd_ray.monitor import watch
from mlsd_ray.settings import Workdir
from mlsd_ray.spec import DesignCard
from mlsd_ray.watch_loop import default_stages


def _loop(card: DesignCard, workdir: Workdir) -> Any:
    watch.run(card, workdir, default_stages())
    return {"stopped": True}


if __name__ == "__main__":
    sys.exit(job_main(__doc__ or "", _loop))
