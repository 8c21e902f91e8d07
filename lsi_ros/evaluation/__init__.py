"""Quality evaluation: classical single-pixel baselines at equal pattern budget
(:mod:`lsi_ros.evaluation.quality`, runner ``run_quality``; CLI hook ``add_arguments``/``main``)."""
