"""The study (issue #11): does contrasting audio with CF *and* genres beat the rest here?

Every config, several seeds, each trained to convergence on one generated corpus, with
intervals and paired comparisons. Where each part lives:

    plan.py        the plan: configs, seeds, lr grid, epochs, the time estimate
    directory.py   the study directory: where each step writes its file; StudyError
    pipeline.py    which runs exist; training and evaluating them resumably
    evaluate.py    one encoder evaluated on both layers (eval.json, eval.npz)
    analysis.py    the finished runs collected; intervals and paired differences; the
                   re-analysis (seed-level tests, Holm over the reading's claims, margins)
    stats.py       the bootstrap on per-item results; seed-level t-test, TOST, Holm
    checks.py      manipulation checks of a generated corpus from the view inputs alone
                   (CF and genre metadata -> true genre, mood), no training
    report.py      results.md/.csv/.json, reanalysis.md/.json, plots, the published copy,
                   the reading; --reanalyse rebuilds them from a results.json alone

The mechanism study (reports/mechanism/PLAN.md; --mechanism, make mechanism) runs on the
same machinery, one study directory per generator preset:

    mechanism_plan.py    its settings, budget, runs per setting, their order, the estimate
    mechanism.py         the runner: corpora, manipulation checks and the gate, the runs
    hypotheses.py        H1-H4 as contrasts of per-item arrays, Holm, the decision rule
    mechanism_report.py  results.json/.csv and plots from what has finished
    mechanism_tables.py  its results.md

The command line is musicrep.cli.study (scripts/study.py).

The corpus is generated: the numbers say what the objectives do on data with planted
structure, nothing about real music, and the models are useless for real music.
"""
