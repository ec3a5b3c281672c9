"""Ray job: offline batch prediction with the card's model on Ray Data, written as Parquet.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/predict.py --card systems/harmful_content.yaml --workdir /tmp/mlsd-work \
        --input s3://bucket/posts.parquet --output s3://bucket/predictions/
"""

import argparse
import sys

from mlsd_ray.batch_predict import predict_dataset
from mlsd_ray.jobtools import job_main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--input", required=True, help="Parquet/CSV/JSONL file, folder or s3://")
    parser.add_argument("--output", default=None, help="Parquet folder (default: in the workdir)")
    parser.add_argument("--alias", default=None, help="registry alias (default: the card's)")
    parser.add_argument("--model-dir", default=None, help="a local package instead")
    args, rest = parser.parse_known_args()
    sys.exit(
        job_main(
            __doc__ or "",
            lambda card, workdir: predict_dataset(
                card,
                workdir,
                args.input,
                args.output,
                alias=args.alias,
                model_dir=args.model_dir,
            ),
            rest,
        )
    )
