"""Evaluation jobs: a whole data set through the served models, with statistics that decide.

A job is accepted (``POST /v1/evaluations``: the data set is written into the job's own folder,
checked, indexed), kept in a job store (``store.py``: SQLite in FRAMECAST_JOB_DIR, shared by
every worker of the machine), run through the one inference path at a lower priority than online
requests (``runner.py``), summed up with confidence intervals and paired tests (``stats.py``) and
reported from its result alone (``report.py``, ``plots.py``).

- ``archives.py``: zip and tar members written safely into the job's folder, or refused;
- ``datasets.py``: the forms a data set comes in (.npy, .npz, an archive of clips, a long video
  cut into windows) → clips and labels;
- ``manager.py``: accept, run, cancel, list; what a server does with its jobs when it stops.
"""
