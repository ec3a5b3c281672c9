#!/bin/bash
# Branch points on the model kind and on the task category in the library (mlsd_ray/),
# excluding the data layer (input field kinds) and monitoring/combiner/online-metric "kind"s;
# column kinds (init_card), source kinds, the ANN index kind and A/B metric kinds are not model
# kinds either, and a `for ... in` comprehension is not a branch.
cd "${1:-.}"
grep -rnE '(spec\.kind|\bkind\b|"kind"\)) *(==|!=|in|not in) |isinstance\([a-z_]+, *(XGBoostModel|LightGBMModel|TabularMLP|TransformerTextClassifier)\)' mlsd_ray --include=*.py \
 | grep -vE 'mlsd_ray/(data|monitor)/|batch_predict.py|serve/combine.py|gate.py:.*relative|metric\.kind|kind == "(text|category|time)"' \
 | grep -vE 'init_card.py:.*c\.kind in \("int"|self\.kind == "(postgres|nats)"|recsys/index.py:.*"hnsw"|recsys/ab.py|for [a-z_, ]+ in ' > /tmp/kind_bp.txt
grep -rnE '(category|regression) *(==|!=|in|not in) |\bis_regressor\b|if (not )?regression\b|regression else|if regression|\(\{\} if regression' mlsd_ray --include=*.py \
 | grep -vE 'mlsd_ray/(data|models)/|features.py|is_regressor(: bool)? = ' > /tmp/task_bp.txt
echo "kind branch points: $(wc -l < /tmp/kind_bp.txt)   task branch points (outside data/ and models/): $(wc -l < /tmp/task_bp.txt)"
