"""How tests/data/schema5.db.gz was made: a schema-5 database written by normlab at
commit 4ba5197 (before probe rows gained unit and quantile columns), for the upgrade
and run-id tests. Run with that commit's src on PYTHONPATH:
``python make_schema5.py schema5.db && gzip -9 schema5.db``."""

import sys
from pathlib import Path

import normlab
from normlab.claims.definitions import claim_studies
from normlab.spec.study import StudySpec
from normlab.store.db import Store

out = Path(sys.argv[1])
out.unlink(missing_ok=True)
spec = StudySpec.model_validate({
    "name": "v5-trained", "seeds": 2,
    "fixed": {"hidden": [16], "epochs": 1, "inputs": "scaled", "val_size": 1000,
              "probes": ["activations", "bn", "layers"], "probe_every": 500, "eval_every": 800,
              "log_every": 50},
    "grid": {"norm": ["batch", "none"]},
})
normlab.run_study(spec, db=out)
with Store(out) as store:
    for claim in (7, 12, 13, 14, 22):
        for s in claim_studies([claim], "quick").values():
            store.register_study(s.name, s.model_dump(mode="json"), s.study().configs)
    cnn = StudySpec.model_validate({
        "name": "cnn-small", "seeds": 2,
        "fixed": {"model": "cnn", "channels": [8, 16], "hidden": [32], "inputs": "scaled",
                  "epochs": 1, "batch_size": 128},
        "grid": {"norm": ["batch", "none"]},
    })
    store.register_study(cnn.name, cnn.model_dump(mode="json"), cnn.study().configs)
    store.conn.execute("VACUUM")
